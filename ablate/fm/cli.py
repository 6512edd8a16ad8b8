"""`ablate fm ...`: our own fundus foundation model for the `foundation` loss term.

Registered in the main CLI as `app.add_typer(fm_app, name="fm")`. Heavy imports
(torch, Ray) happen inside the command, so `ablate --help` stays fast.
"""

from __future__ import annotations

from pathlib import Path

import typer

from ablate.runtime.program_command import FinishedRun, RunOptions, train_program
from ablate.ui import console
from ablate.weights.table import ablate_weights_file

app = typer.Typer(cls=console.Commands, add_completion=False, no_args_is_help=True,
                  help="Fundus foundation model: pretrain a small MAE ViT saved in RETFound's checkpoint format.")

# Same as ablate.fm.pretrain.DEFAULT_OUT (tested).
_DEFAULT_OUT = ablate_weights_file("fundus_mae")


@app.callback()
def fm() -> None:
    """Fundus foundation model: pretrain a small MAE ViT saved in RETFound's checkpoint format."""
    # A callback keeps `fm` a command group (`fm pretrain`) even with one command.


def foundation_line(options: dict) -> str:
    """One YAML flow line: `foundation: {model: custom, arch: {...}, weights: ..., ...}`."""
    import yaml

    return "foundation: " + yaml.safe_dump(options, default_flow_style=True, sort_keys=False, width=10**6).strip()


@train_program(app)
def pretrain(
    data: Path = typer.Option(..., "--data", help="prepared dataset folder (`ablate prepare`); its train split is used"),
    out: Path = typer.Option(_DEFAULT_OUT, "--out", help="checkpoint file to write (RETFound MAE format)"),
    preset: str = typer.Option("fundus_mae_tiny", "--preset", help="fundus_mae_tiny (ViT 192x6, patch 16) or fundus_mae_small (384x12)"),
    steps: int = typer.Option(2000, "--steps", help="optimizer steps"),
    batch_size: int = typer.Option(32, "--batch-size", help="global batch (split over workers)"),
    size: int | None = typer.Option(None, "--size", help="training size, px (default: the dataset's prepared size)"),
    lr: float = typer.Option(5e-4, "--lr", help="peak AdamW lr (5% warm-up, then cosine to 0)"),
    mask_ratio: float = typer.Option(0.75, "--mask-ratio", help="fraction of patches masked"),
    *,
    run: RunOptions,  # built by train_program from the options above and the shared ones
) -> FinishedRun:
    """Pretrain a masked autoencoder on fundus photographs (Ray Train) for the `foundation` term."""
    from ablate.fm.pretrain import pretrain as run_pretrain

    r = run_pretrain(data, out, run, preset=preset, size=size, mask_ratio=mask_ratio)
    typer.echo(f"{r.out_file}: MAE {r.arch} after {r.steps} steps, last fm/loss {r.loss:.4f}")
    typer.echo("Trained on ImageNet-normalised inputs, so imagenet_norm must be true. Loss options "
               "(add weight / adaptive / start_step as for any term):")
    typer.echo("  " + foundation_line(r.foundation))
    return r
