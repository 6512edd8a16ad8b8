"""Search spaces: expansion, overrides and errors that name the key."""

from __future__ import annotations

import json
import time
from pathlib import Path

import jsonschema
import pytest
import yaml
from typer.testing import CliRunner

from ablate.cli import app
from ablate.config import ConfigError, SearchSpaceFile, find_grid, load_grid, shipped_grids
from tests.helpers.grids import TWO_COMBINATION_GRID, write_grid_file

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
    return load_grid(write_grid_file(tmp_path, text), **kw)


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
    from tests.helpers.ablate_modules import MODULES, imports_of

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


def _refused(tmp_path: Path, text: str) -> str:
    p = write_grid_file(tmp_path, text)
    with pytest.raises(ConfigError) as e:
        load_grid(p)
    msg = str(e.value)
    assert str(p) in msg and "\n" not in msg, msg
    return msg


# ---------------------------------------------------------------- 1: seeds

@pytest.mark.bad_input
@pytest.mark.parametrize("seeds, index, shown", [
    ("[0, 18446744073709551616]", 1, "18446744073709551616"),  # 2^64: results.parquet cannot hold it
    ("[-1]", 0, "-1"),
    ("[4294967296]", 0, "4294967296"),  # 2^32: over numpy's seeding range
    ("[0, true]", 1, "True"),
    ("[0, 1.5]", 1, "1.5"),
])
def test_seed_out_of_range_refused_at_load_naming_file_key_and_index(tmp_path, seeds, index, shown):
    msg = _refused(tmp_path, TWO_COMBINATION_GRID.replace("seeds: [0, 1]", f"seeds: {seeds}"))
    assert f"seeds[{index}]: {shown} is not a seed" in msg and "4294967295" in msg


def test_seed_range_edges_load(tmp_path):
    g = load_grid(write_grid_file(tmp_path, TWO_COMBINATION_GRID.replace("seeds: [0, 1]", "seeds: [0, 4294967295]")))
    assert sorted({t.seed for t in g.trials}) == [0, 4294967295]


# ---------------------------------------------------------------- 2: duplicate keys

@pytest.mark.bad_input
def test_duplicate_combination_name_refused_naming_file_line_and_key(tmp_path):
    text = TWO_COMBINATION_GRID.replace("  a: {}\n", "  a: {}\n  a: {train: {steps: 9}}\n")
    msg = _refused(tmp_path, text)
    lines = text.splitlines()
    first, second = (i + 1 for i, l in enumerate(lines) if l.startswith("  a: "))
    assert f"line {second}: duplicate key 'a' (first at line {first})" in msg


@pytest.mark.bad_input
def test_duplicate_key_anywhere_refused(tmp_path):
    msg = _refused(tmp_path, TWO_COMBINATION_GRID.replace("train: {steps: 5, batch_size: 2}", "train: {steps: 5, steps: 50}"))
    assert "duplicate key 'steps'" in msg


def test_merge_key_overrides_are_not_duplicates(tmp_path):
    text = TWO_COMBINATION_GRID.replace("  b:\n    losses: {l2: {weight: 1.0}}",
                        "  b:\n    losses: {l2: {weight: 1.0}}\n    train: {<<: {steps: 5, batch_size: 2}, steps: 7}")
    g = load_grid(write_grid_file(tmp_path, text))
    assert {t.train.steps for t in g.trials if t.combination == "b"} == {7}


# ---------------------------------------------------------------- 3: document size and aliases

@pytest.mark.bad_input
def test_billion_laughs_refused_quickly_naming_the_file(tmp_path):
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, 10):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]")
    t0 = time.monotonic()
    msg = _refused(tmp_path, "\n".join(lines) + "\n")
    assert time.monotonic() - t0 < 5
    assert "aliases expand to more than" in msg


@pytest.mark.bad_input
def test_recursive_alias_refused(tmp_path):
    assert "contains it" in _refused(tmp_path, "name: &n [*n]\n")


@pytest.mark.bad_input
def test_oversized_file_refused_before_parsing(tmp_path):
    msg = _refused(tmp_path, TWO_COMBINATION_GRID + "#" + "x" * (1 << 20) + "\n")
    assert "over the 1,048,576-byte limit" in msg
    endless = tmp_path / "endless.yaml"  # stat says 0 bytes; reading it would never end
    endless.symlink_to("/dev/zero")
    with pytest.raises(ConfigError, match=r"endless\.yaml: over the 1,048,576-byte limit"):
        load_grid(endless)


@pytest.mark.bad_input
def test_deep_nesting_and_huge_integer_refused_in_one_line(tmp_path):
    assert "nested too deeply" in _refused(tmp_path, "name: " + "[" * 50_000 + "]" * 50_000 + "\n")
    assert "cannot be read" in _refused(tmp_path, TWO_COMBINATION_GRID.replace("seeds: [0, 1]", "seeds: [" + "9" * 5000 + "]"))


def test_anchors_within_the_limit_still_load(tmp_path):
    text = TWO_COMBINATION_GRID.replace("  l2: {weight: 1.0}", "  l2: &w {weight: 1.0}").replace(
        "losses: {l2: {weight: 1.0}}", "losses: {l2: &w {weight: 1.0}}") + "\n"
    g = load_grid(write_grid_file(tmp_path, text))
    assert len(g.trials) == 4


# ---------------------------------------------------------------- 4: model overrides

@pytest.mark.bad_input
@pytest.mark.parametrize("model, key, says", [
    ("{preset: tiny, ch: -5}", "model.ch", "must be an integer >= 1, got -5"),
    ("{preset: tiny, ch: 0}", "model.ch", "must be an integer >= 1, got 0"),
    ("{preset: tiny, ch: 1.5}", "model.ch", "must be an integer >= 1"),
    ("{preset: tiny, z_channels: true}", "model.z_channels", "must be an integer >= 1"),
    ("{preset: tiny, num_res_blocks: 0}", "model.num_res_blocks", "must be an integer >= 1"),
    ("{preset: tiny, n_embed: 1}", "model.n_embed", "must be an integer >= 2"),
    ("{preset: tiny, ch_mult: []}", "model.ch_mult", "non-empty list"),
    ("{preset: tiny, ch_mult: [1, 0]}", "model.ch_mult", "non-empty list"),
    ("{preset: tiny, ch_mult: 2}", "model.ch_mult", "non-empty list"),
    ("{preset: tiny, attn_resolutions: [-8]}", "model.attn_resolutions", "feature-map sizes"),
    ("{preset: tiny, bottleneck: vqq}", "model.bottleneck", "'vq' or 'none'"),
    ("{preset: tiny, dropout: 1.0}", "model.dropout", "[0, 1)"),
    ("{preset: tiny, beta: .inf}", "model.beta", "finite number >= 0"),
    ("{preset: tiny, legacy: 1}", "model.legacy", "true/false"),
    ("{preset: tiny, ch_mult: [1, 1, 1, 1, 1, 1, 1]}", "data.size", "not divisible by the model's downsampling 64"),
    ('"abc"', "model", "expected a mapping"),
    ("[tiny]", "model", "expected a mapping"),
    ("{preset: [tiny]}", "model.preset", "expected a preset name"),
])
def test_model_override_checked_at_load(tmp_path, model, key, says):
    msg = _refused(tmp_path, TWO_COMBINATION_GRID.replace("model: {preset: tiny}", f"model: {model}"))
    assert f"combinations.a.{key}:" in msg and says in msg, msg


@pytest.mark.bad_input
@pytest.mark.parametrize("patch, key", [
    (("  data: {size: 32}", "  data: abc"), "combinations.a.data"),
    (("  train: {steps: 5, batch_size: 2}", "  train: [1]"), "combinations.a.train"),
    (("    l1: {weight: 1.0}", "    l1: 3"), "combinations.a.losses.l1"),
    (("  a: {}", "  a: abc"), "combinations.a"),
    (("base:\n  data", "base: 7\nx:\n  data"), "base"),
])
def test_every_block_that_must_be_a_mapping_says_so(tmp_path, patch, key):
    text = TWO_COMBINATION_GRID.replace(*patch)
    if patch[1].startswith("base: 7"):
        text = "name: hostile\nbase: 7\ncombinations: {a: {}}\n"
    msg = _refused(tmp_path, text)
    assert f"{key}: expected a mapping" in msg, msg


def test_valid_overrides_still_load(tmp_path):
    g = load_grid(write_grid_file(tmp_path, TWO_COMBINATION_GRID.replace("model: {preset: tiny}",
                                                "model: {preset: tiny, ch: 8, ch_mult: [1, 2, 2], dropout: 0.1}")))
    assert g.trials[0].model.overrides == {"ch": 8, "ch_mult": [1, 2, 2], "dropout": 0.1}


# ---------------------------------------------------------------- 5: the grid's name

@pytest.mark.bad_input
@pytest.mark.parametrize("name", ["../..", "/tmp/elsewhere", "a/b", "..", ".", "'x y'", "[a]", "''"])
def test_grid_name_must_be_a_plain_name(tmp_path, name):
    msg = _refused(tmp_path, TWO_COMBINATION_GRID.replace("name: hostile", f"name: {name}"))
    assert "name:" in msg and "is not a plain name" in msg


def test_plain_names_load(tmp_path):
    assert load_grid(write_grid_file(tmp_path, TWO_COMBINATION_GRID.replace("name: hostile", "name: my-grid_v2.1"))).name == "my-grid_v2.1"
    assert load_grid(write_grid_file(tmp_path, TWO_COMBINATION_GRID.replace("name: hostile", "name: 2024"))).name == "2024"


@pytest.fixture(scope="module")
def schema() -> dict:
    r = CliRunner().invoke(app, ["schema"])
    assert r.exit_code == 0, r.output
    return json.loads(r.output)  # the whole output is one JSON document


def test_schema_names_the_top_level_keys(schema):
    assert set(schema["properties"]) == {"name", "description", "base", "combinations", "seeds", "questions", "tune"}
    assert schema["required"] == ["combinations"] and schema["additionalProperties"] is False
    jsonschema.Draft202012Validator.check_schema(schema)  # a well-formed draft 2020-12 schema
    train = schema["$defs"]["TrainSpec"]["properties"]
    assert train["steps"]["type"] == "integer" and train["precision"]["enum"] == ["auto", "bf16", "fp16", "fp32"]


def test_shipped_search_spaces_validate(schema):
    grids = shipped_grids()
    assert {"smoke", "losses", "edges", "pixel"} <= set(grids)
    validator = jsonschema.Draft202012Validator(schema)
    for name, path in grids.items():
        raw = yaml.safe_load(path.read_text())
        validator.validate(raw)
        SearchSpaceFile.model_validate(raw)  # the pydantic model the schema is made from
        assert load_grid(path).trials, name  # and the loader agrees


@pytest.mark.bad_input
@pytest.mark.parametrize("patch", [
    {"train": {"stepz": 5}},  # an unknown key of a spec
    {"train": {"steps": "5"}},  # a string where an integer is asked for
    {"train": {"precision": "half"}},
    {"data": {"augment": {"hflip": 1}}},
    {"colour": 1},  # an unknown block of a combination
])
def test_what_the_loader_refuses_the_schema_refuses(schema, tmp_path, patch):
    raw = yaml.safe_load(shipped_grids()["smoke"].read_text())
    raw["combinations"]["l1"].update(patch)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft202012Validator(schema).validate(raw)
    p = tmp_path / "g.yaml"
    p.write_text(yaml.safe_dump(raw))
    with pytest.raises(ValueError, match=r"g\.yaml: combinations\.l1"):
        load_grid(p)
