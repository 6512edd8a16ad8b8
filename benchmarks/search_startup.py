"""Stage-1 trial start-up (tuned arms, issue 29): what sharing the decoded splits and reusing
Tune's trial actors save per trial.

One run of `run_searches` (stage 1 of `ablate launch`) per variant, on one small tuned grid
(one combination searching losses.l1.weight, FIFO scheduler, one trial at a time), all in one
Ray started here once, the variants alternated (A B C A B C ...) so that other load on the
machine falls on all of them alike:

- A, before: every trial reads and decodes its splits (`share_data=False`), no actor reuse;
- B: the splits decoded once per search and kept in Ray's object store (`share_data=True`),
  no actor reuse (what a search under ASHA does);
- C: B plus Tune's `reuse_actors` (what a search without a scheduler does).

Actor reuse is tied to the scheduler in `search_combination` (on for `scheduler: none`, off
under ASHA); to change one thing at a time every variant runs without a scheduler, and the
script sets `reuse_actors` itself by wrapping `ray.tune.TuneConfig` (nothing in ablate/ is
changed for the benchmark).

Per trial, from EXP/search/<combination>/<trial>/result.json (last line) and
EXP/search/trials.parquet:
- start-up: `time/startup_s`, from the trial's driver function starting to its first
  training step done; phases `time/startup/*` (seconds after the driver began);
- overhead: Tune's `time_total_s` (the trial's wall, as trials.parquet's `wall_time_s`)
  minus `time/in_steps_s` (host time inside training steps);
- outside: (search wall - the sum of its trials' walls) / trials: what each trial costs
  beyond its own wall (the Tune trial actor's start or reset, Tune's bookkeeping, the
  search's set-up and, in B and C, decoding the splits once), amortised.

    .venv/bin/python benchmarks/search_startup.py --rounds 2
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import time
from pathlib import Path

import pandas as pd
from _drive import add_args, prepared

GRID = """
name: search_startup
base:
  data: {{size: {size}, augment: {{hflip: true, rotate_deg: 10}}}}
  model: {{preset: {preset}}}
  train: {{steps: {steps}, batch_size: {batch}, lr: 1.0e-3, log_every: {val_every}, image_every: {steps},
          val_every: {val_every}, val_batches: 1, checkpoint_every: {steps}}}
  losses: {{l1: {{weight: 1.0}}, codebook: {{weight: 1.0}}}}
combinations:
  l1: {{}}
seeds: [0]
tune:
  objective: val/psnr
  budget: {budget}
  algorithm: random
  scheduler: none
  seed: 7
  space:
    l1:
      losses.l1.weight: {{loguniform: [0.3, 3.0]}}
"""

# name -> (share_data, reuse_actors)
VARIANTS = {"A": (False, False), "B": (True, False), "C": (True, True)}
LABEL = {"A": "A before: per-trial decode, no reuse", "B": "B shared splits, no reuse",
         "C": "C shared splits + reuse_actors"}
PHASES = ("datasets_ready", "worker_started", "model_ready", "first_batch", "first_step")


def force_reuse(reuse: bool) -> None:
    """Make every TuneConfig built from here on carry `reuse_actors=reuse` (search_combination
    derives it from the scheduler; the benchmark sets it directly)."""
    from ray import tune

    original = getattr(tune.TuneConfig, "_benchmark_original", tune.TuneConfig)

    def config(**kw):
        return original(**{**kw, "reuse_actors": reuse})

    config._benchmark_original = original  # type: ignore[attr-defined]
    tune.TuneConfig = config  # type: ignore[misc,assignment]


def run_variant(grid_file: Path, data: Path, out: Path, share: bool, reuse: bool) -> float:
    """Stage 1 of the grid into `out`, as `ablate launch` runs it (pipeline.launch); its wall time."""
    from ablate.config import resolve_grid
    from ablate.lock import command_line, experiment_lock
    from ablate.train.launch import LaunchOptions, prepare_grid
    from ablate.train.search_stage import run_searches

    opts = LaunchOptions(grid=str(grid_file), data=str(data), out=str(out), evaluate=False, concurrent=1,
                         search_only=True)
    full, grid = resolve_grid(opts.grid)
    prep = prepare_grid(opts, full, grid)
    assert prep is not None
    force_reuse(reuse)
    with experiment_lock(prep.out, command_line(), create=True):
        t0 = time.perf_counter()
        run_searches(prep, opts, share_data=share)
        return time.perf_counter() - t0


def trial_figures(out: Path) -> list[dict]:
    """One dict per stage-1 trial: trials.parquet's row joined with its result.json's last line."""
    table = pd.read_parquet(out / "search" / "trials.parquet")
    rows = []
    for _, r in table.iterrows():
        lines = (out / "search" / r["combination"] / r["trial"] / "result.json").read_text().splitlines()
        last = json.loads(lines[-1])
        assert r["status"] == "done", f"{r['trial']}: {r['status']}"
        assert abs(last["time/startup_s"] - r["startup_s"]) < 1e-6  # the table reads the same report
        rows.append({"trial": r["trial"], "order": r["order"], "pid": last["pid"], "startup": r["startup_s"],
                     "wall": r["wall_time_s"],
                     "in_steps": last["time/in_steps_s"], "overhead": r["wall_time_s"] - last["time/in_steps_s"],
                     "train_passes": last["data/train_passes_streamed"],
                     **{p: last.get(f"time/startup/{p}_s", float("nan")) for p in PHASES}})
    return rows


GROUP_STEP = re.compile(r"\[Worker Group Initialization\] (?:\d+ )?(.+?) in ([\d.]+)s")


def worker_group_steps(session_dir: Path) -> dict[str, dict[str, float]]:
    """Per Train run (named after its Tune trial): the seconds Ray Train's controller logged for
    each step of starting its worker group (logs/train/ray-train-sys-controller-*.log)."""
    runs: dict[str, dict[str, float]] = {}
    for log in (session_dir / "logs" / "train").glob("ray-train-sys-controller-*.log"):
        for line in log.read_text().splitlines():
            d = json.loads(line)
            m = GROUP_STEP.match(d["message"])
            if m and d.get("run_name"):
                runs.setdefault(d["run_name"], {})[m.group(1)] = float(m.group(2))
    return runs


def run_all(args, work: Path, data: Path, stamp: int) -> None:
    """Every variant, `args.rounds` times, alternated; each into EXP = work/exp-<stamp>-<variant><round>
    with EXP/bench.json (the variant, its search's wall, the load average as it started, Ray's session)."""
    from ablate.runtime import ray_session

    grid_file = work / "search_startup.yaml"
    grid_file.write_text(GRID.format(size=args.size, preset=args.preset, steps=args.steps, batch=args.batch,
                                     val_every=args.val_every, budget=args.budget))
    with ray_session(None):  # one Ray for every variant: its own start is in none of them
        import ray

        session = ray._private.worker._global_node.get_session_dir_path()  # Ray Train's logs are there
        for rnd in range(args.rounds):
            for v in args.variants:
                share, reuse = VARIANTS[v]
                out = work / f"exp-{stamp}-{v}{rnd}"
                load = os.getloadavg()[0]  # the other load on the machine as this variant starts
                wall = run_variant(grid_file, data, out, share, reuse)
                (out / "bench.json").write_text(json.dumps({"variant": v, "round": rnd, "search_wall_s": wall,
                                                            "load": load, "session": session}))
                rows = trial_figures(out)
                print(f"{time.strftime('%H:%M:%S')} round {rnd} {v} (load {load:.1f}): search wall {wall:.1f} s, "
                      "start-ups " + ", ".join(f"{r['startup']:.1f}" for r in rows)
                      + " s, trial walls " + ", ".join(f"{r['wall']:.1f}" for r in rows) + " s", flush=True)


GROUP_NAMES = ["worker actors created", "Train context initialized on workers", "Train function launched on workers",
               "Worker group startup completed"]


def report(work: Path, stamp: int) -> None:
    """The table of every variant run under work/exp-<stamp>-*: medians over all its trials."""
    med = statistics.median
    trials: dict[str, list[dict]] = {}
    walls: dict[str, list[float]] = {}
    outside: dict[str, list[float]] = {}
    actors: dict[str, list[int]] = {}  # distinct trial-actor processes per search
    sessions = set()
    for out in sorted(work.glob(f"exp-{stamp}-*"), key=lambda p: p.name[-1] + p.name):  # by round, then variant
        if not (out / "bench.json").is_file():
            continue  # a variant that did not finish
        b = json.loads((out / "bench.json").read_text())
        v, rows = b["variant"], trial_figures(out)
        trials.setdefault(v, []).extend(rows)
        walls.setdefault(v, []).append(b["search_wall_s"])
        outside.setdefault(v, []).append((b["search_wall_s"] - sum(r["wall"] for r in rows)) / len(rows))
        actors.setdefault(v, []).append(len({r["pid"] for r in rows}))
        sessions.add(b["session"])
    group = {k: g for s in sessions for k, g in worker_group_steps(Path(s)).items()}
    variants = sorted(trials)
    n = {v: len(trials[v]) for v in variants}
    print(f"\nmedians over {n} trials per variant ({', '.join(f'{v}: {len(walls[v])} searches' for v in variants)})")
    print("\n| variant | start-up s | first trial / later | " + " | ".join(PHASES)
          + " | Train worker group up | data to first batch | trial wall s | in steps s | overhead s "
          "| outside per trial s | search wall s (each search) |")
    print("|---|" + "---|" * (len(PHASES) + 9))
    for v in variants:
        t = trials[v]
        first, later = [r["startup"] for r in t if r["order"] == 0], [r["startup"] for r in t if r["order"] > 0]
        print(f"| {LABEL[v]} | {med(r['startup'] for r in t):.1f} | {med(first):.1f} / {med(later):.1f} | "
              + " | ".join(f"{med(r[p] for r in t):.1f}" for p in PHASES)
              + f" | {med(r['worker_started'] - r['datasets_ready'] for r in t):.1f}"
              f" | {med(r['first_batch'] - r['model_ready'] for r in t):.1f}"
              f" | {med(r['wall'] for r in t):.1f} | {med(r['in_steps'] for r in t):.1f} "
              f"| {med(r['overhead'] for r in t):.1f} | {med(outside[v]):.1f} "
              f"| {med(walls[v]):.1f} ({', '.join(f'{w:.1f}' for w in walls[v])}) |")
    if "A" in trials:
        base = trials["A"]
        for v in variants:
            if v == "A":
                continue
            t = trials[v]
            print(f"{v}/A: start-up {med(r['startup'] for r in t) / med(r['startup'] for r in base):.2f}, "
                  f"overhead {med(r['overhead'] for r in t) / med(r['overhead'] for r in base):.2f}, "
                  f"outside per trial {med(outside[v]) / med(outside['A']):.2f}, "
                  f"search wall {med(walls[v]) / med(walls['A']):.2f}")
    print("\nRay Train starting each trial's worker group, from its controller's log (medians, s):")
    print("| variant | " + " | ".join(GROUP_NAMES) + " |\n|---|" + "---|" * len(GROUP_NAMES))
    for v in variants:
        got = [group.get(r["trial"], {}) for r in trials[v]]
        print(f"| {v} | " + " | ".join(f"{med(g[k] for g in got if k in g):.2f}" for k in GROUP_NAMES) + " |")
    passes = {v: sorted({r["train_passes"] for r in trials[v]}) for v in variants}
    print(f"train passes streamed from Ray Data per trial: {passes}")
    print(f"Tune trial-actor processes per search (distinct result pids): {actors}")


def main() -> None:
    ap = argparse.ArgumentParser()
    add_args(ap)
    ap.add_argument("--data", default=None, help="a prepared dataset (default: DRIVE prepared at --size in --work)")
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--val-every", type=int, default=10)
    ap.add_argument("--budget", type=int, default=4, help="stage-1 trials per search")
    ap.add_argument("--rounds", type=int, default=2, help="times each variant runs (A B C, A B C, ...)")
    ap.add_argument("--variants", default="ABC")
    ap.add_argument("--report", type=int, default=None, metavar="STAMP",
                    help="print the table of an earlier run in --work (its exp-STAMP-* folders); runs nothing")
    args = ap.parse_args()

    if args.report is not None:
        report(Path(args.work), args.report)
        return
    if args.data:
        work, data = Path(args.work) if args.work else Path(args.data).parent, Path(args.data)
    else:
        work, data = prepared(args, args.size, "search-startup")
    stamp = int(time.time())
    run_all(args, work, data, stamp)
    print(f"\n{args.preset} @ {args.size} px, batch {args.batch}, {args.steps} steps, budget {args.budget}, one trial "
          f"at a time, {args.rounds} round(s); again with: --work {work} --report {stamp}")
    report(work, stamp)


if __name__ == "__main__":
    main()
