"""`ablate launch --estimate`: one probe per distinct configuration, projected onto the
placement's concurrent slots."""

from __future__ import annotations

import pytest

from ablate.config import load_grid, resolve_grid
from ablate.train.estimate import distinct_configs, probe_spec, project_wall, trial_seconds


def test_losses_grid_has_six_configurations_of_three_seeds():
    full, _ = resolve_grid("losses")
    groups = distinct_configs(full)
    assert len(full.trials) == 18 and len(groups) == 6
    assert all(len(g) == 3 and len({s.seed for s in g}) == 3 for g in groups.values())


def test_probe_times_every_term_with_random_trunks():
    _, some = resolve_grid("losses", only=("retfound",))
    probed = probe_spec(some.trials[0])
    terms = {l.name: l for l in probed.losses}
    assert all(l.start_step == 0 for l in probed.losses)
    assert terms["foundation"].options == {"model": "retfound", "pretrained": False}  # auto timed as ViT-L


def test_projection_packs_trials_longest_first():
    assert project_wall([10, 10, 10, 10], concurrent=2) == 20
    assert project_wall([30, 10, 10, 10], concurrent=2) == 30
    assert project_wall([5], concurrent=4) == 5
    spec = resolve_grid("losses")[0].trials[0]
    assert trial_seconds(spec, 0.1, slowdown=2, startup_s=0) == pytest.approx(20000 * 0.2)


def test_estimate_probes_the_tiny_grid_on_the_cpu(tiny_grid, capsys):
    from ablate.train.launch import LaunchOptions, print_estimate

    grid = load_grid(tiny_grid)
    result = print_estimate(grid, LaunchOptions(grid=str(tiny_grid), concurrent=1, cpus_per_worker=0.5))
    out = capsys.readouterr().out
    assert len(result["configs"]) == 2  # l1 and l2 combinations
    for names, probe, n, per in result["configs"]:
        assert probe.device == "cpu" and probe.precision == "fp32" and probe.step_s > 0 and n == 1
        assert per == pytest.approx(6 * probe.step_s + 15.0)
    assert result["wall_s"] == pytest.approx(sum(per for *_, per in result["configs"]))  # one at a time
    assert "projected grid wall time" in out


def test_packing_from_gpu_memory_and_a_measured_peak():
    from ablate.train.estimate import packing_for

    gib = 2**30
    assert packing_for(141 * gib, 12 * gib) == 0.125  # 9 would fit in 85 %: at most 8
    assert packing_for(80 * gib, 20 * gib) == pytest.approx(1 / 3, abs=1e-4)
    assert packing_for(24 * gib, 30 * gib) == 1.0  # does not fit twice: one per GPU
    with pytest.raises(ValueError):
        packing_for(24 * gib, 0)
