"""One trial's evaluation of one chunk of test images, in two Ray tasks that overlap.

`device_stage` does what a GPU speeds up: reconstruct from the checkpoint, fidelity
inside the FOV (and LPIPS), the vessel map of each reconstruction (the segmenter's
forward pass) and the Inception / foundation-model features. `morphology_stage` does
what runs on the CPU only: the vessel-border errors on the green channel, the map's morphology
and its agreement with the original's map (skeletons, graphs, box counting).

The driver submits the second with the first's ObjectRef as an argument, so Ray starts
it as soon as that chunk's device work is done, on a CPU slot, while the GPU task of
the next chunk or trial runs: the GPU never waits for skeletonisation. On a CPU-only
evaluation both stages are CPU tasks and the split costs one hand-over of the
reconstruction's green channel and maps per chunk (a few MB).
"""

from __future__ import annotations

import numpy as np


def bring_weights(shipped: dict) -> None:
    """A task on another node than the launcher: the pretrained files come from the experiment."""
    if shipped:
        from ablate.weights.ship import receive

        receive(shipped)


def fm_extractor(model: str):
    """The foundation model's feature extractor (for the Frechet distance in its features)."""
    from ablate.evaluate.fidelity import foundation_features
    from ablate.losses import LOSSES

    return foundation_features(LOSSES.build("foundation", model=model))


def device_stage(checkpoint: str, images: np.ndarray, fov: np.ndarray, segmenter: str, nets: dict,
                 batch_size: int, use_gpu: bool = False, ref_levels=None, shipped: dict | None = None) -> dict:
    """Reconstruct one chunk with one trial's model; fidelity, vessel maps and features.

    Args:
        checkpoint: the trial's checkpoint folder (or URI).
        images, fov: the chunk's test images (uint8 (N, S, S, 3)) and FOV masks.
        segmenter: the spec `load_segmenter` takes.
        nets: the feature networks present ({"lpips": bool, "fm": model name}).
        batch_size: images per forward pass.
        use_gpu: run on the task's GPU (refused when it sees none: never a silent switch).
        ref_levels: the originals' vessel levels, so both maps of an image are cut alike.
        shipped: pretrained files another node fetched (brought here first).
    """
    import torch

    from ablate.backbones.inception import FIDInception
    from ablate.evaluate.fov_fidelity import pair_metrics_fov
    from ablate.evaluate.reconstruct import reconstruct, to_tensor, vessel_maps
    from ablate.segmenter.unet_file import load_segmenter

    torch.set_num_threads(1)
    if use_gpu and not torch.cuda.is_available():
        raise RuntimeError("evaluation asked for a GPU (--gpus-per-task) but this Ray task sees none")
    device = "cuda" if use_gpu else "cpu"
    bring_weights(shipped or {})
    x = to_tensor(images).to(device)
    recon = reconstruct(checkpoint, x, device, batch_size)
    lpips = None
    if nets.get("lpips"):
        from ablate.losses import LOSSES

        lpips = LOSSES.build("lpips").to(device)
    metrics = {k: v.cpu().numpy() for k, v in pair_metrics_fov(x, recon, fov, lpips).items()}
    maps = vessel_maps(load_segmenter(segmenter, device=device), recon, fov, ref_levels)
    # Feature networks in fp32: FID / KID / FD come from feature covariances, which bf16 would shift.
    out = {"metrics": metrics, "maps": np.asarray(maps), "green": x[:, 1].cpu().double().numpy(),
           "green_hat": recon[:, 1].cpu().double().numpy()}
    if nets.get("inception", True):  # absent: a caller from before it could be missing
        out["inception"] = FIDInception().to(device)(recon).cpu().numpy()
    if "fm" in nets:
        out["fm"] = fm_extractor(nets["fm"]).to(device)(recon).cpu().numpy()
    return out


def morphology_stage(device_out: dict, fov: np.ndarray, ref_maps: np.ndarray, morphology: str = "ablate") -> dict:
    """The CPU half: per-image rows (fidelity from the device stage, the vessel-border errors, the
    reconstruction's vessel features, agreement with the original's map) and the features
    passed through, in the shape the driver collects: {"rows", "inception"[, "fm"]}."""
    from ablate.evaluate.automorph import features_for
    from ablate.evaluate.vessel_border import border_errors

    vessel_features, agreement = features_for(morphology)
    maps, metrics = device_out["maps"], device_out["metrics"]
    rows = []
    for i in range(len(maps)):
        row = {k: float(v[i]) for k, v in metrics.items()}
        row.update(border_errors(device_out["green"][i], device_out["green_hat"][i], ref_maps[i], fov[i]))
        row.update({f"recon.{k}": v for k, v in vessel_features(maps[i], fov[i]).items()})
        row.update(agreement(ref_maps[i], maps[i], fov[i]))
        rows.append(row)
    out = {"rows": rows}
    for key in ("inception", "fm"):
        if key in device_out:
            out[key] = device_out[key]
    return out
