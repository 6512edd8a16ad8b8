"""Options that build every registered loss term offline and fast, for the composite's and
the term contract's tests (tests/losses/). A new term needs an entry here: the coverage test
fails without one."""

from __future__ import annotations

# Options that make each term buildable offline and fast (random trunks where a
# pretrained file would be needed: the property tests do not depend on weights).
TERM_OPTIONS: dict[str, dict] = {
    "l1": {},
    "edge_map_l1": {},  # scores the 4th channel: CHANNELS below
    "l2": {},
    "codebook": {},
    "adversarial": {"filters": 8},
    "edge": {"family": "meijering", "sigmas": [1.0]},
    "ssim": {},
    "ms_ssim": {},
    "lpips": {"pretrained": False},
    "foundation": {"model": "custom", "pretrained": False, "input_size": 32, "taps": [1, 2],
                   "arch": {"patch_size": 8, "embed_dim": 32, "depth": 2, "num_heads": 2}},
}
SIZE = {"ms_ssim": 176}  # five scales need 176 px

# Channels of the images a term is tried on inside a CompositeLoss (3 unless listed): edge_map_l1
# scores the edge map an edge-channel arm adds as a 4th channel, and refuses images without one.
CHANNELS = {"edge_map_l1": 4}
