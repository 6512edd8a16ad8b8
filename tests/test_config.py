"""Search spaces: expansion, overrides and errors that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from ablate.config import ConfigError, find_grid, load_grid

BASE = """
name: t
base:
  data: {size: 32}
  model: {preset: tiny}
  train: {steps: 5, batch_size: 2}
  losses:
    l1: {weight: 1.0}
    codebook: {weight: 0.5}
combinations:
  a: {}
  b:
    losses: {l1: null, l2: {weight: 2.0, start_step: 3}}
seeds: [0, 1]
"""


def _grid(tmp_path: Path, text: str, **kw):
    p = tmp_path / "g.yaml"
    p.write_text(text)
    return load_grid(p, **kw)


def test_expands_combinations_times_seeds(tmp_path):
    g = _grid(tmp_path, BASE)
    assert [(t.combination, t.seed) for t in g.trials] == [("a", 0), ("a", 1), ("b", 0), ("b", 1)]
    b = g.trials[2]
    assert [(l.name, l.weight, l.start_step) for l in b.losses] == [("codebook", 0.5, 0), ("l2", 2.0, 3)]
    flat = b.flat()
    assert flat["loss.l2.weight"] == 2.0 and flat["train.steps"] == 5 and flat["model.preset"] == "tiny"


def test_overrides_reach_every_trial(tmp_path):
    g = _grid(tmp_path, BASE, overrides={"train": {"steps": 9}, "data": {"size": 64}})
    assert {t.train.steps for t in g.trials} == {9} and {t.data.size for t in g.trials} == {64}


@pytest.mark.parametrize(
    "patch, message",
    [
        (("l1: {weight: 1.0}", "l1: {wieght: 1.0}"), r"combinations\.a\.losses\.l1: unknown option\(s\) \['wieght'\]"),
        (("l1: {weight: 1.0}", "l1: {weight: -1.0}"), r"losses\.l1\.weight: must be >= 0"),
        (("l1: {weight: 1.0}", "l1: {weight: .nan}"), r"losses\.l1\.weight: must be finite"),
        (("l1: {weight: 1.0}", "l11: {weight: 1.0}"), r"unknown loss term 'l11'\. Did you mean 'l1'\?"),
        (("steps: 5", "stepz: 5"), r"combinations\.a\.train: unknown key\(s\) \['stepz'\]"),
        (("steps: 5", "steps: 0"), r"train\.steps: must be > 0"),
        (("preset: tiny", "preset: tiny2"), r"unknown preset 'tiny2'\. Did you mean 'tiny'\?"),
        (("seeds: [0, 1]", "seeds: []"), r"seeds: expected a non-empty list"),
        (("size: 32", "size: 30"), r"data\.size: must be a multiple of 8"),
    ],
)
def test_errors_name_the_key(tmp_path, patch, message):
    with pytest.raises(ConfigError, match=message):
        _grid(tmp_path, BASE.replace(*patch))


@pytest.mark.bad_input
def test_malformed_yaml_names_the_file(tmp_path):
    with pytest.raises(ConfigError, match=r"g\.yaml: malformed YAML"):
        _grid(tmp_path, "base: {data: [1, 2}\n")


def test_grid_with_no_combinations(tmp_path):
    with pytest.raises(ConfigError, match="combinations: expected a non-empty mapping"):
        _grid(tmp_path, "name: x\ncombinations: {}\n")


def test_all_terms_removed(tmp_path):
    text = BASE.replace("losses: {l1: null, l2: {weight: 2.0, start_step: 3}}", "losses: {l1: null, codebook: null}")
    with pytest.raises(ConfigError, match="every loss term was removed"):
        _grid(tmp_path, text)


def test_shipped_search_spaces_load():
    for name in ("smoke", "losses", "edges", "pixel"):
        g = load_grid(find_grid(name))
        assert g.trials, name


@pytest.mark.bad_input
def test_unknown_preset_grid_suggests():
    with pytest.raises(ConfigError, match="unknown grid 'smok'. Did you mean 'smoke'"):
        find_grid("smok")


def test_the_loader_sits_at_the_top_and_the_specs_are_a_leaf():
    """Stages below receive specs by value (ablate.specs); only the pipeline and the command
    line read search spaces (ablate.config). The specs import only the errors leaf."""
    from tests.test_layout import MODULES, imports_of

    readers = {m for m in MODULES for target, _ in imports_of(m) if target == "ablate.config"}
    assert readers <= {"ablate.pipeline", "ablate.cli"}, readers
    assert [t for t, _ in imports_of("ablate.specs")] == ["ablate.errors"]
    assert {t for t, _ in imports_of("ablate.spec_reader")} == {"ablate.specs"}


def test_the_specs_and_the_loader_import_no_torch():
    """A worker, or `ablate schema`, gets the specs without torch (a grid's checks load it later)."""
    import subprocess
    import sys

    code = "import sys, ablate.specs, ablate.spec_reader, ablate.config; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
