"""The `prior:` block of a search space (ablate.config, ablate.specs.PriorSpec): defaults are the
authors' prior, `{}` works, null removes base's, bad settings are named by file and key."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ablate.config import find_grid, load_grid
from ablate.specs import ConfigError, PriorSpec

BASE = """
base:
  data: {{size: 32}}
  model: {{preset: {preset}}}
  train: {{steps: 4}}
  losses: {{l1: {{weight: 1.0}}}}
  prior: {prior}
combinations:
  a: {{}}
  b: {b}
seeds: [3, 4]
"""


def _grid(tmp_path: Path, prior: str = "{}", b: str = "{}", preset: str = "tiny"):
    p = tmp_path / "g.yaml"
    p.write_text(BASE.format(prior=prior, b=b, preset=preset))
    return load_grid(p)


def test_an_empty_prior_block_is_the_authors_prior_seeded_by_the_trial(tmp_path):
    g = _grid(tmp_path)
    spec = g.trials[0].prior
    assert spec == PriorSpec()
    assert (spec.layers, spec.heads, spec.width, spec.pkeep, spec.dropout) == (12, 8, 512, 0.9, 0.0)
    assert [t.prior_seed for t in g.trials] == [3, 4, 3, 4]
    assert g.trials[0].flat()["prior.seed"] == 3 and g.trials[0].flat()["prior.layers"] == 12


def test_a_combination_can_drop_or_change_the_prior(tmp_path):
    g = _grid(tmp_path, b="{prior: null}")
    assert [t.prior is None for t in g.trials] == [False, False, True, True]
    assert not any(k.startswith("prior.") for k in g.trials[2].flat())
    g = _grid(tmp_path, prior="{layers: 2, seed: 9}", b="{prior: {width: 64, heads: 4}}")
    assert g.trials[2].prior.layers == 2 and g.trials[2].prior.width == 64  # deep-merged into base's
    assert {t.prior_seed for t in g.trials} == {9}


@pytest.mark.parametrize("prior, says", [
    ("{heads: 3, width: 64}", "combinations.a.prior.width: 64 is not a multiple of heads (3)"),
    ("{top_k: 65}", "combinations.a.prior.top_k: must be in [1, 64]"),
    ("{pkeep: 0}", "combinations.a.prior.pkeep: must be in (0, 1]"),
    ("{steps: 0}", "combinations.a.prior.steps: must be > 0"),
    ("{layer: 2}", "combinations.a.prior: unknown key(s) ['layer']"),
    ("{lr: fast}", "combinations.a.prior.lr: expected a number"),
    ("[1, 2]", "combinations.a.prior: expected a mapping"),
    ("{condition: 3}", "combinations.a.prior.condition: expected a string"),
    ("{condition: ' '}", "combinations.a.prior.condition: expected the name of a label column of the dataset"),
])
def test_bad_prior_settings_are_named_by_file_and_key(tmp_path, prior, says):
    with pytest.raises(ConfigError) as e:
        _grid(tmp_path, prior=prior)
    assert str(e.value).startswith(str(tmp_path / "g.yaml")) and says in str(e.value)


def test_a_condition_names_a_label_column_and_only_then_reaches_the_trial_record(tmp_path):
    """`condition` is a column name (checked against the dataset at launch, tests/prior/test_condition.py);
    an unconditional prior's flat record has no `prior.condition` key, so grid.json of a grid written
    before conditions existed is the same grid."""
    g = _grid(tmp_path, b="{prior: {condition: grade}}")
    assert [t.prior.condition for t in g.trials] == [None, None, "grade", "grade"]
    assert "prior.condition" not in g.trials[0].flat() and g.trials[2].flat()["prior.condition"] == "grade"


def test_a_model_without_a_codebook_has_no_prior(tmp_path):
    with pytest.raises(ConfigError, match="without a codebook has no codes"):
        _grid(tmp_path, preset="tiny_ae")


def test_the_commented_prior_block_of_losses_yaml_is_the_authors_prior(tmp_path):
    """Uncommented as a user would, it parses to the defaults (the authors' settings) but for
    the steps and sample count it states."""
    text = find_grid("losses").read_text()
    assert "  # prior:" in text
    lines, inside = [], False
    for line in text.splitlines():
        if line == "  # prior:":
            inside = True
            lines.append("  prior:")
        elif inside and line.startswith("  #   "):
            lines.append("    " + line[len("  #   "):])
        else:
            inside = False
            lines.append(line)
    p = tmp_path / "losses.yaml"
    p.write_text("\n".join(lines))
    prior = load_grid(p).trials[0].prior
    assert prior is not None
    assert prior == PriorSpec(steps=prior.steps, samples=prior.samples)


def test_the_synthesis_grid_models_8x8_codes_at_32_px():
    from ablate.models.presets import check_overrides

    g = load_grid(find_grid("synthesis"))
    t = g.trials[0]
    arch = check_overrides(t.model.preset, t.model.overrides)
    assert t.data.size == 32 and t.data.size // arch.downsampling() == 8
    assert all(s.prior is not None for s in g.trials)
    assert re.fullmatch(r"[a-z_]+", g.name)
