"""Evaluation of trained trials on the held-out test split: fidelity (PSNR, SSIM,
MS-SSIM, LPIPS, FID/KID/FD), vessel morphology and map agreement, run as Ray tasks
(run.py); the reconstruction step (reconstruct.py) and the image-grid samples the
report draws (samples.py)."""
