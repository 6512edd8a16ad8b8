"""Search-space grid texts and writing them to a file, for the tests of loading a grid
(test_config), launching one (test_pipeline) and the CLI (test_cli)."""

from __future__ import annotations

from pathlib import Path

# Two combinations times two seeds on the tiny model: the valid grid that the tests of hostile
# input damage one line at a time (str.replace on a line below), so each names its mistake.
TWO_COMBINATION_GRID = """
name: hostile
base:
  data: {size: 32}
  model: {preset: tiny}
  train: {steps: 5, batch_size: 2}
  losses:
    l1: {weight: 1.0}
combinations:
  a: {}
  b:
    losses: {l2: {weight: 1.0}}
seeds: [0, 1]
"""


def write_grid_file(folder: Path, text: str) -> Path:
    """`text` written to folder/g.yaml; returns that path.

    Args:
        folder: an existing folder (a test's tmp_path).
        text: the grid's YAML.
    """
    p = folder / "g.yaml"
    p.write_text(text)
    return p
