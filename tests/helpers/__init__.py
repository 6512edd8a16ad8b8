"""Code several test modules share, one definition each (fixtures live in conftest.py).
Constants of the whole suite here; the rest by topic in this package's modules (images,
prepared, grids, segmentation, checkpoints, console, text, vessel_drawings, launch_processes,
network, ablate_modules, commands, tensorboard, experiments, loss_terms). Imported as
`from tests.helpers[.topic] import ...`: the test folders are packages, so a module's place
in tests/ does not change how it imports these. A test module never imports another test
module: what two of them need goes here."""

from __future__ import annotations

from pathlib import Path

# The checkout: the folder holding ablate/, README.md, search_spaces/ and tests/.
REPO = Path(__file__).resolve().parents[2]

# A two-trial grid small enough to train and evaluate in tens of seconds on DRIVE at 32 px
# (conftest's `tiny_grid` writes it to a file; some tests derive other grids from it).
TINY_GRID = """
name: e2e
base:
  data: {size: 32, augment: {hflip: true, rotate_deg: 5}}
  model: {preset: tiny}
  train: {steps: 6, batch_size: 4, lr: 1.0e-3, log_every: 2, image_every: 3, val_every: 3,
          val_batches: 1, checkpoint_every: 3}
  losses:
    codebook: {weight: 1.0}
combinations:
  l1: {losses: {l1: {weight: 1.0}}}
  l2: {losses: {l2: {weight: 1.0}}}
seeds: [0]
"""


# ray.init calls of the current test, recorded by conftest's `no_ray_start` fixture (which
# refuses them): `assert not RAY_STARTS` says a check refused before Ray started.
# ray.is_initialized() cannot tell: the session's shared Ray may be up.
RAY_STARTS: list = []
