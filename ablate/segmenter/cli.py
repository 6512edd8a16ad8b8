"""`ablate segmenter ...`: the vessel segmenter that judges reconstructions.

Registered in the main CLI as `app.add_typer(segmenter_app, name="segmenter")`.
Heavy imports (torch, Ray) happen inside the commands, so `ablate --help` stays fast.
"""

from __future__ import annotations

from pathlib import Path

import typer

from ablate.runtime.program_command import FinishedRun, RunOptions, train_program
from ablate.ui import console
from ablate.weights.table import ablate_weights_file

app = typer.Typer(cls=console.Commands, add_completion=False, no_args_is_help=True,
                  help="Vessel segmenter: train the U-Net on DRIVE, or score a segmenter on a prepared split.")

# Same as ablate.segmenter.unet_file.DEFAULT_WEIGHTS (tested).
_DEFAULT_OUT = ablate_weights_file("vessel_unet")


@app.callback()
def segmenter() -> None:
    """Vessel segmenter: train the U-Net on DRIVE, or score a segmenter on a prepared split."""


@train_program(app)
def train(
    data: Path = typer.Option(..., "--data", help="DRIVE prepared by `ablate prepare` (512 px for the real model)"),
    out: Path = typer.Option(_DEFAULT_OUT, "--out", help="U-Net file to write"),
    steps: int = typer.Option(3000, "--steps",
                              help="optimizer steps (3000: Dice 0.806 on DRIVE test at 512 px with --input rgb, "
                                   "30 min on 2 cores)"),
    batch_size: int = typer.Option(8, "--batch-size", help="patches per step (global, split over workers)"),
    patch: int = typer.Option(128, "--patch", help="side of the random training crops, px"),
    patches_per_image: int = typer.Option(32, "--patches-per-image", help="crops per augmented image per pass"),
    lr: float = typer.Option(2e-3, "--lr", help="peak Adam lr (5% warm-up, then cosine to 0)"),
    base: int = typer.Option(16, "--base", help="U-Net channels at full resolution"),
    levels: int = typer.Option(4, "--levels", help="U-Net resolutions"),
    include_val: bool = typer.Option(False, "--include-val", help="train on the val split too (no val scores)"),
    camera: str = typer.Option("on", "--camera",
                               help="on: a random camera per image (rotation, photometry, blur, resolution loss, "
                                    "noise); off: none of it (the scale jitter is --zoom)"),
    zoom: float = typer.Option(1.15, "--zoom", help="scale jitter: each image scaled by [1/zoom, zoom]; 1 = none"),
    input_norm: str = typer.Option("clahe-green", "--input",
                                   help="what the U-Net sees: clahe-green (the CLAHE'd green channel; travels "
                                        "better to STARE, BENCHMARKS.md) or rgb; recorded in the file and applied "
                                        "when it predicts"),
    *,
    run: RunOptions,  # built by train_program from the options above and the shared ones
) -> FinishedRun:
    """Train the vessel U-Net on the manual masks of a prepared DRIVE (Ray Train); score it on the test split."""
    from ablate.segmenter.scores import format_metrics
    from ablate.segmenter.train import train_segmenter

    r = train_segmenter(data, out, run, patch=patch, arch={"base": base, "levels": levels},
                        patches_per_image=patches_per_image, include_val=include_val, camera=camera, zoom=zoom,
                        norm=input_norm)
    typer.echo(f"{r.out_file}: U-Net {r.arch} trained {r.steps} steps at {r.size} px in {r.train_seconds / 60:.1f} min")
    if r.metrics:
        typer.echo(format_metrics(r.metrics))
    else:
        typer.echo("no test split with vessel masks in the dataset: the file carries no metrics")
    return r


@app.command()
def evaluate(
    data: Path = typer.Option(..., "--data", help="prepared dataset with vessel masks (DRIVE)"),
    segmenter: str = typer.Option(str(_DEFAULT_OUT), "--segmenter",
                                  help="U-Net file, or 'ridge' / 'ridge:frangi' for the classical fallback"),
    split: str = typer.Option("test", "--split", help="train, val or test"),
    threshold: str = typer.Option("file", "--threshold",
                                  help="file: the segmenter's own threshold (a U-Net's: set on DRIVE's val split); "
                                       "otsu: Otsu's threshold of this split's pooled probabilities (no labels used)"),
    json_out: Path | None = typer.Option(None, "--json", help="also write the figures to this file"),
) -> None:
    """Dice (at the segmenter's threshold) and ROC AUC inside the FOV on a prepared split's images
    that have a manual vessel mask, against the binary reference; soft Dice and clDice against the
    soft reference (the resized mask's area fraction, issue 31) where the dataset has one. The
    images without a mask are named and skipped."""
    import json

    from ablate.segmenter.evaluation import evaluate_split
    from ablate.segmenter.scores import format_metrics
    from ablate.segmenter.unet_file import load_segmenter

    seg = load_segmenter(segmenter)
    m = evaluate_split(seg, data, split, threshold=threshold)
    typer.echo(format_metrics(m))
    if m["skipped"]:
        typer.echo(f"skipped {len(m['skipped'])} image(s) of the {split} split without a vessel mask: "
                   + ", ".join(m["skipped"][:20]) + (" ..." if len(m["skipped"]) > 20 else ""))
    stored = getattr(seg, "metrics", None)
    if stored:
        typer.echo(f"(stored in the file at training: Dice {stored.get('dice', float('nan')):.4f}, "
                   f"AUC {stored.get('auc', float('nan')):.4f} on {stored.get('split', '?')} of {stored.get('data', '?')})")
    if json_out:
        from ablate.io import write_text_atomic

        write_text_atomic(json_out, json.dumps(m, indent=1) + "\n")
