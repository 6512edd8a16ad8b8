"""Issue 25, search spaces and launch configuration: hostile or wrong search spaces, launch
settings and weight overrides are refused at load, before Ray, in one line naming the file and
key; a configuration error inside a trial is not retried."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from ablate.config import ConfigError, load_grid
from tests.helpers import REPO as ROOT

GRID = """
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


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "g.yaml"
    p.write_text(text)
    return p


def _refused(tmp_path: Path, text: str) -> str:
    p = _write(tmp_path, text)
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
    msg = _refused(tmp_path, GRID.replace("seeds: [0, 1]", f"seeds: {seeds}"))
    assert f"seeds[{index}]: {shown} is not a seed" in msg and "4294967295" in msg


def test_seed_range_edges_load(tmp_path):
    g = load_grid(_write(tmp_path, GRID.replace("seeds: [0, 1]", "seeds: [0, 4294967295]")))
    assert sorted({t.seed for t in g.trials}) == [0, 4294967295]


# ---------------------------------------------------------------- 2: duplicate keys


@pytest.mark.bad_input
def test_duplicate_combination_name_refused_naming_file_line_and_key(tmp_path):
    text = GRID.replace("  a: {}\n", "  a: {}\n  a: {train: {steps: 9}}\n")
    msg = _refused(tmp_path, text)
    lines = text.splitlines()
    first, second = (i + 1 for i, l in enumerate(lines) if l.startswith("  a: "))
    assert f"line {second}: duplicate key 'a' (first at line {first})" in msg


@pytest.mark.bad_input
def test_duplicate_key_anywhere_refused(tmp_path):
    msg = _refused(tmp_path, GRID.replace("train: {steps: 5, batch_size: 2}", "train: {steps: 5, steps: 50}"))
    assert "duplicate key 'steps'" in msg


def test_merge_key_overrides_are_not_duplicates(tmp_path):
    text = GRID.replace("  b:\n    losses: {l2: {weight: 1.0}}",
                        "  b:\n    losses: {l2: {weight: 1.0}}\n    train: {<<: {steps: 5, batch_size: 2}, steps: 7}")
    g = load_grid(_write(tmp_path, text))
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
    msg = _refused(tmp_path, GRID + "#" + "x" * (1 << 20) + "\n")
    assert "over the 1,048,576-byte limit" in msg
    endless = tmp_path / "endless.yaml"  # stat says 0 bytes; reading it would never end
    endless.symlink_to("/dev/zero")
    with pytest.raises(ConfigError, match=r"endless\.yaml: over the 1,048,576-byte limit"):
        load_grid(endless)


@pytest.mark.bad_input
def test_deep_nesting_and_huge_integer_refused_in_one_line(tmp_path):
    assert "nested too deeply" in _refused(tmp_path, "name: " + "[" * 50_000 + "]" * 50_000 + "\n")
    assert "cannot be read" in _refused(tmp_path, GRID.replace("seeds: [0, 1]", "seeds: [" + "9" * 5000 + "]"))


def test_anchors_within_the_limit_still_load(tmp_path):
    text = GRID.replace("  l2: {weight: 1.0}", "  l2: &w {weight: 1.0}").replace(
        "losses: {l2: {weight: 1.0}}", "losses: {l2: &w {weight: 1.0}}") + "\n"
    g = load_grid(_write(tmp_path, text))
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
    msg = _refused(tmp_path, GRID.replace("model: {preset: tiny}", f"model: {model}"))
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
    text = GRID.replace(*patch)
    if patch[1].startswith("base: 7"):
        text = "name: hostile\nbase: 7\ncombinations: {a: {}}\n"
    msg = _refused(tmp_path, text)
    assert f"{key}: expected a mapping" in msg, msg


def test_valid_overrides_still_load(tmp_path):
    g = load_grid(_write(tmp_path, GRID.replace("model: {preset: tiny}",
                                                "model: {preset: tiny, ch: 8, ch_mult: [1, 2, 2], dropout: 0.1}")))
    assert g.trials[0].model.overrides == {"ch": 8, "ch_mult": [1, 2, 2], "dropout": 0.1}


# ---------------------------------------------------------------- 5: the grid's name


@pytest.mark.bad_input
@pytest.mark.parametrize("name", ["../..", "/tmp/elsewhere", "a/b", "..", ".", "'x y'", "[a]", "''"])
def test_grid_name_must_be_a_plain_name(tmp_path, name):
    msg = _refused(tmp_path, GRID.replace("name: hostile", f"name: {name}"))
    assert "name:" in msg and "is not a plain name" in msg


def test_plain_names_load(tmp_path):
    assert load_grid(_write(tmp_path, GRID.replace("name: hostile", "name: my-grid_v2.1"))).name == "my-grid_v2.1"
    assert load_grid(_write(tmp_path, GRID.replace("name: hostile", "name: 2024"))).name == "2024"


# ---------------------------------------------------------------- 6: configuration errors are not retried


def test_config_error_found_behind_ray_wrappers():
    from ray.exceptions import RayTaskError
    from ray.train import WorkerGroupError

    from ablate.runtime.config_errors import config_error

    bad = ConfigError("g.yaml: combinations.a.model.ch: must be an integer >= 1, got -5")
    workers = WorkerGroupError("workers failed", {0: RuntimeError("collateral"), 1: bad})
    assert config_error(workers) is bad
    try:
        try:
            raise bad
        except ConfigError as e:
            raise RuntimeError("wrapped") from e
    except RuntimeError as chained:
        assert config_error(chained) is bad
    assert config_error(RayTaskError("run_trial", "tb", bad)) is bad
    assert config_error(WorkerGroupError("lost node", {0: RuntimeError("node died")})) is None
    assert config_error(OSError("disk full")) is None


@pytest.mark.fault
def test_config_error_in_a_worker_is_reported_once_not_raised_for_a_retry(monkeypatch):
    """The wiring: the per-worker loop reports a ConfigError (no Ray Train restart follows a normal
    return) and re-raises anything else (a fault, which the restarts are for)."""
    import ray.train

    from ablate.runtime.config_errors import CONFIG_ERROR
    from ablate.train import loop

    reported = []
    monkeypatch.setattr(ray.train, "report", lambda metrics, *a, **k: reported.append(metrics))

    class Wrong:
        def __init__(self, config):
            raise ConfigError("trial a-s0: model: resolution 40 is not divisible by the downsampling factor 16")

    monkeypatch.setattr(loop, "WorkerRun", Wrong)
    loop.train_loop_per_worker({})  # returns: nothing for Ray Train to retry
    assert reported == [{CONFIG_ERROR: "ConfigError: trial a-s0: model: resolution 40 is not divisible by the "
                                       "downsampling factor 16"}]

    class Faulty:
        def __init__(self, config):
            raise RuntimeError("NCCL timeout")

    monkeypatch.setattr(loop, "WorkerRun", Faulty)
    with pytest.raises(RuntimeError, match="NCCL timeout"):
        loop.train_loop_per_worker({})
    assert len(reported) == 1


@pytest.mark.fault
def test_trial_ended_by_a_config_error_is_an_error_row_with_the_message():
    from types import SimpleNamespace

    from ablate.runtime.config_errors import CONFIG_ERROR
    from ablate.train.results import collect_results

    g = load_grid(ROOT / "search_spaces" / "smoke.yaml")
    spec = g.trials[0]
    key = f"{spec.combination}-s{spec.seed}"
    result = SimpleNamespace(config={"trial": key}, error=None, path="/x",
                             metrics={CONFIG_ERROR: "ConfigError: bad model", "trial_id": "abc"})
    row = collect_results([result], {key: spec}).iloc[0]
    assert row["status"] == "error" and row["error"] == "ConfigError: bad model"


def test_driver_and_worker_both_run_under_without_retry():
    """run_trial needs a Tune session to call; its wiring is checked in its source instead."""
    import inspect

    from ablate.train import driver, loop

    assert "without_retry(lambda: fit_torch_run(" in inspect.getsource(driver.run_trial)
    assert "tune.report" in inspect.getsource(driver.run_trial)
    assert "without_retry(" in inspect.getsource(loop.train_loop_per_worker)


def test_live_view_says_a_config_error_trial_failed_not_done():
    import io

    from ablate.runtime.config_errors import CONFIG_ERROR
    from ablate.train.live_view import FAILED, GridView

    out = io.StringIO()
    view = GridView(concurrent=1, stream=out)
    view.add("a-s0", "a", 0, 5, 2)
    view.trial_finished("a-s0", {CONFIG_ERROR: "ConfigError: bad model", "trial_id": "x"})
    assert view.rows["a-s0"].status == FAILED
    assert "a-s0 FAILED" in out.getvalue() and "ConfigError: bad model (a configuration error: not retried)" in out.getvalue()


# ---------------------------------------------------------------- 7: a weights file the user named


@pytest.mark.bad_input
@pytest.mark.parametrize("content", [b"this is not a checkpoint\n", os.urandom(4096), b"PK\x03\x04truncated", b""])
def test_garbage_vgg16_override_refused_naming_variable_and_file(tmp_path, monkeypatch, content):
    from ablate.train.pretrained import check_given_files

    junk = tmp_path / "vgg16.pth"
    junk.write_bytes(content)
    monkeypatch.setenv("ABLATE_VGG16_WEIGHTS", str(junk))
    grid = load_grid(ROOT / "search_spaces" / "smoke.yaml")
    with pytest.raises(ConfigError) as e:
        check_given_files(grid, evaluate=True)  # evaluation computes LPIPS with it
    msg = str(e.value)
    assert msg.startswith(f"$ABLATE_VGG16_WEIGHTS names {junk}, which ") and "\n" not in msg
    assert "point it at vgg16-397923af.pth" in msg and "or unset it" in msg
    assert junk.read_bytes() == content  # the user's file is left as it was


def test_real_torch_files_named_by_the_variable_pass(tmp_path, monkeypatch):
    import torch

    from ablate.train.pretrained import check_given_files
    from ablate.weights.torch_file import torch_file_problem

    new, old = tmp_path / "new.pth", tmp_path / "old.pth"
    torch.save({"features.0.weight": torch.zeros(1)}, new)
    torch.save({"features.0.weight": torch.zeros(1)}, old, _use_new_zipfile_serialization=False)
    assert torch_file_problem(new) is None and torch_file_problem(old) is None
    monkeypatch.setenv("ABLATE_VGG16_WEIGHTS", str(new))
    check_given_files(load_grid(ROOT / "search_spaces" / "smoke.yaml"), evaluate=True)


@pytest.mark.bad_input
def test_cli_dry_run_refuses_garbage_vgg16_and_out_of_range_seed_in_one_line(tmp_path, drive32, monkeypatch):
    """Both before Ray (the dry run never starts it), exit 2, one line, no traceback."""
    import ray
    from typer.testing import CliRunner

    from ablate.cli import app

    monkeypatch.setattr(ray, "init", lambda *a, **k: pytest.fail("Ray started"))
    junk = tmp_path / "vgg16.pth"
    junk.write_text("<html>404 Not Found</html>\n")
    monkeypatch.setenv("ABLATE_VGG16_WEIGHTS", str(junk))
    r = CliRunner().invoke(app, ["launch", "--grid", "smoke", "--data", str(drive32), "--dry-run"])
    assert r.exit_code == 2 and "Traceback" not in r.output, r.output
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        f"error: $ABLATE_VGG16_WEIGHTS names {junk}, which is not a torch weights file (neither torch.save's zip "
        "format nor its legacy format): point it at vgg16-397923af.pth"), r.output
    monkeypatch.delenv("ABLATE_VGG16_WEIGHTS")
    grid = _write(tmp_path, GRID.replace("seeds: [0, 1]", "seeds: [0, 18446744073709551616]"))
    r = CliRunner().invoke(app, ["launch", "--grid", str(grid), "--data", str(drive32), "--dry-run"])
    assert r.exit_code == 2 and r.output.strip() == (
        f"error: {grid}: seeds[1]: 18446744073709551616 is not a seed; seeds are integers from 0 to 4294967295 "
        "(2^32-1)"), r.output


@pytest.mark.bad_input
def test_batch_not_divisible_by_workers_refused_before_ray(tmp_path, monkeypatch, drive32):
    """Each worker of each trial refused it (and Ray Train retried it); now the launch refuses it
    first, a dry run too."""
    import ray

    import ablate.runtime
    from ablate.pipeline import LaunchOptions, prepare_launch

    monkeypatch.setattr(ray, "init", lambda *a, **k: pytest.fail("Ray started"))
    monkeypatch.setattr(ablate.runtime, "local_resources", lambda: (16.0, 0.0))  # 3 workers fit anywhere
    grid = _write(tmp_path, GRID)
    with pytest.raises(ConfigError) as e:
        prepare_launch(LaunchOptions(grid=str(grid), data=str(drive32), workers=3, dry_run=True))
    assert str(e.value) == (f"{grid}: combinations.a.train.batch_size: 2 is not divisible by --workers 3 (the "
                            "batch is split evenly over the workers); change one of them")
