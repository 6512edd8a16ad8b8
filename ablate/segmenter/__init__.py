"""The vessel segmenter, the judge of every vessel metric: the U-Net and the classical
ridge fallback (model.py), its training data (patches.py), its Ray Train program
(train.py, `ablate segmenter train`) and the `segmenter` typer sub-app (cli.py)."""
