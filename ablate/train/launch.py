"""`ablate launch`: expand a search space into trials and run them with Ray Tune.

Resource rule (measured on a 2-core machine): Ray Data's read/decode tasks each
need one whole CPU, so the CPUs held by all concurrent trials' drivers and
workers must leave at least one CPU free, or the stream never starts and the
run hangs without an error. `plan_placement` enforces it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import signal
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from ablate import storage
from ablate.config import ConfigError, Grid, find_grid, load_grid
from ablate.data.shards import DatasetError, read_manifest, shard_paths
from ablate.train.driver import Placement, run_trial, trial_key

DATA_CPU_RESERVE = 1.0


@dataclass(frozen=True)
class LaunchOptions:
    grid: str
    data: str | None = None
    out: str | None = None
    workers: int = 1
    cpus_per_worker: float | None = None
    threads_per_worker: int | None = None  # torch intra-op threads; None = the worker's CPUs, rounded
    gpus_per_worker: float = 0.0
    concurrent: int | None = None
    address: str | None = None
    steps: int | None = None
    epochs: int | None = None
    size: int | None = None
    max_failures: int = 2  # worker-group restarts per trial, from its last checkpoint
    trial_retries: int = 1  # whole-trial retries by Tune (after the worker restarts are spent)
    resume: bool = False
    evaluate: bool = True  # evaluate finished trials on the test split after training
    segmenter: str | None = None  # for evaluation; None = our U-Net where present, else the ridge fallback
    dry_run: bool = False


def _ray_data_can_starve(node_cpus: list[float], workers: int, cpus_per_worker: float, drivers: int,
                         driver_cpus: float) -> bool:
    """True when some placement of `workers` Train workers and `drivers` trial drivers
    leaves no node with one whole free CPU, so Ray Data's next task could wait forever.

    Ray puts them on whichever nodes it likes, so the worst case decides: for each node
    the fewest (workers, drivers) that take it below one free CPU, then whether the
    whole cluster can be covered with what there is (a small knapsack, Pareto-pruned)."""
    unit = 10_000  # Ray's resource granularity; integers avoid 2 * 0.95 != 1.9 trouble
    c, d = max(1, round(cpus_per_worker * unit)), round(driver_cpus * unit)
    spent = {0: 0}  # workers used -> fewest drivers used, to cover the nodes seen so far
    for n in node_cpus:
        cap = round(n * unit)
        ways = []
        for j in range(min(workers, cap // c) + 1):
            free = cap - j * c
            i = 0 if free < unit else (free - unit) // d + 1 if d else drivers + 1
            if i <= drivers and j * c + i * d <= cap:
                ways.append((j, i))
            if i == 0:
                break
        nxt: dict[int, int] = {}
        for w, dr in spent.items():
            for j, i in ways:
                if w + j <= workers and dr + i <= drivers and dr + i < nxt.get(w + j, drivers + 1):
                    nxt[w + j] = dr + i
        if not nxt:
            return False  # this node keeps a whole CPU whatever lands on it
        spent = nxt
    return True


def plan_placement(total_cpus: float, workers: int, cpus_per_worker: float | None, gpus_per_worker: float,
                   concurrent: int | None, driver_cpus: float = 0.01,
                   node_cpus: list[float] | None = None) -> Placement:
    """`node_cpus`: the CPUs of each node when Ray spans several; a worker must then fit
    on one node, and the free CPU Ray Data needs must stay whole on some node, not be
    the sum of slivers left on many (worst case, `_ray_data_can_starve`)."""
    if workers < 1:
        raise ConfigError(f"--workers must be >= 1, got {workers}")
    multi = node_cpus is not None and len(node_cpus) > 1
    budget = total_cpus - DATA_CPU_RESERVE
    if budget <= driver_cpus:
        raise ConfigError(f"Ray has {total_cpus:g} CPUs; at least 2 are needed (one stays free for Ray Data)")
    if cpus_per_worker is None:
        per_trial = budget / (concurrent or 1)
        cpus_per_worker = math.floor((per_trial - driver_cpus) / workers * 20) / 20  # 0.05 steps
        cpus_per_worker = min(cpus_per_worker, 8.0)
        if multi:  # one worker on one node, beside a driver
            cpus_per_worker = min(cpus_per_worker, math.floor((max(node_cpus) - driver_cpus) * 20) / 20)
        if cpus_per_worker < 0.05:
            raise ConfigError(f"{workers} workers x {concurrent or 1} concurrent trials do not fit in {total_cpus:g} CPUs")
    if multi and cpus_per_worker > max(node_cpus):
        raise ConfigError(f"--cpus-per-worker {cpus_per_worker:g}: no node has that many CPUs "
                          f"(nodes: {', '.join(f'{n:g}' for n in node_cpus)})")
    per_trial = workers * cpus_per_worker + driver_cpus
    fits = int(budget // per_trial)
    if multi:
        while fits > 0 and _ray_data_can_starve(node_cpus, fits * workers, cpus_per_worker, fits, driver_cpus):
            fits -= 1
    if concurrent is None:
        concurrent = max(1, fits)
    if concurrent > fits:
        if multi and concurrent * per_trial <= budget:
            raise ConfigError(
                f"{concurrent} concurrent trials x {workers} workers x {cpus_per_worker:g} CPUs could fill every node "
                f"(CPUs per node: {', '.join(f'{n:g}' for n in node_cpus)}) below one free CPU, and a Ray Data task "
                f"needs one whole CPU on one node, or the stream stalls. Lower --concurrent or --cpus-per-worker."
            )
        raise ConfigError(
            f"{concurrent} concurrent trials x ({workers} workers x {cpus_per_worker:g} CPUs + {driver_cpus} driver) "
            f"= {concurrent * per_trial:g} CPUs, but only {budget:g} of {total_cpus:g} may be held "
            f"(one CPU stays free for Ray Data, or the stream stalls). Lower --concurrent or --cpus-per-worker."
        )
    return Placement(workers, cpus_per_worker, gpus_per_worker, max(1, int(round(cpus_per_worker))), concurrent, driver_cpus)


def resolve_auto_foundation(grid: Grid) -> Grid:
    """`foundation: {model: auto}` -> RETFound where its weights file is present, else our
    fundus MAE. Decided once, before any trial, and appended to the combination name
    (`retfound-fundus_mae`), so results and logs say which model stood in."""
    from ablate.backbones import WeightsMissing
    from ablate.backbones.retfound import retfound_weights_path

    trials = []
    for spec in grid.trials:
        losses, suffix = [], ""
        for ls in spec.losses:
            if ls.name == "foundation" and ls.options.get("model") == "auto":
                try:
                    retfound_weights_path("retfound", ls.options.get("weights"))
                    chosen = "retfound"
                except WeightsMissing:
                    chosen = "fundus_mae"
                suffix = f"-{chosen}"
                ls = dataclasses.replace(ls, options={**ls.options, "model": chosen})
            losses.append(ls)
        trials.append(dataclasses.replace(spec, losses=tuple(losses), combination=spec.combination + suffix))
    return dataclasses.replace(grid, trials=tuple(trials))


def resolve_grid(opts: LaunchOptions) -> Grid:
    overrides: dict = {}
    if opts.steps is not None:
        overrides.setdefault("train", {})["steps"] = opts.steps
    if opts.epochs is not None:
        overrides.setdefault("train", {})["epochs"] = opts.epochs
    if opts.size is not None:
        overrides.setdefault("data", {})["size"] = opts.size
    return resolve_auto_foundation(load_grid(find_grid(opts.grid), overrides))


def check_data(data_dir: str, grid: Grid) -> dict:
    manifest = read_manifest(data_dir)
    for split in ("train", "val"):
        if manifest["counts"].get(split, 0) == 0:
            raise DatasetError(f"{data_dir}: the {split} split is empty (counts {manifest['counts']})")
        shard_paths(data_dir, split, verify=True)  # checksums once here; trials then skip it
    for spec in grid.trials:
        if spec.data.size > manifest["image_size"]:
            raise DatasetError(
                f"{data_dir}: prepared at {manifest['image_size']} px but trial {trial_key(spec)} asks for "
                f"{spec.data.size} px; re-run `ablate prepare SRC --out {data_dir} --size {spec.data.size}`"
            )
    return manifest


def preflight_losses(grid: Grid) -> None:
    """Fail before Ray starts if a term's weights are missing or its options are wrong."""
    from ablate.losses import LOSSES

    seen = set()
    for spec in grid.trials:
        for ls in spec.losses:
            key = (ls.name, repr(sorted(ls.options.items())))
            if key in seen:
                continue
            seen.add(key)
            entry = LOSSES.get(ls.name)
            if entry.preflight is not None:
                entry.preflight(**ls.options)


def trial_table(grid: Grid) -> str:
    lines = [f"{'trial':<28} {'combination':<20} {'seed':>4}  {'input':<16} losses"]
    for spec in grid.trials:
        terms = ", ".join(f"{l.name}x{l.weight:g}" + ("(adaptive)" if l.adaptive else "") +
                          (f"@{l.start_step}" if l.start_step else "") for l in spec.losses)
        ec = spec.model.edge_channel
        inputs = "rgb" if ec is None else f"rgb+{ec.get('family', 'meijering')}"
        lines.append(f"{trial_key(spec):<28} {spec.combination:<20} {spec.seed:>4}  {inputs:<16} {terms}")
    return "\n".join(lines)


@contextlib.contextmanager
def _sigterm_as_interrupt():
    """SIGTERM (a scheduler, `kill`) gets Ctrl-C's treatment: Tune saves its state
    and stops the trials, so the experiment can be resumed."""
    previous = signal.getsignal(signal.SIGTERM)
    signal.signal(signal.SIGTERM, lambda *_: os.kill(os.getpid(), signal.SIGINT))
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _start_ray(address: str | None) -> bool:
    """Connect or start Ray; returns True when we started it (and so must stop it)."""
    import ray

    if ray.is_initialized():
        return False
    if address:
        ray.init(address=address, log_to_driver=True)
        return False
    tmp = os.environ.get("ABLATE_RAY_TMP") or os.path.join(tempfile.gettempdir(), "ablate-ray")
    # The dashboard also serves the State API that Ray Train polls to clean up
    # placement groups; bound to loopback so nothing is exposed on the network.
    ray.init(num_cpus=os.cpu_count(), include_dashboard=True, dashboard_host="127.0.0.1", _temp_dir=tmp,
             runtime_env={"env_vars": {"RAY_TRAIN_V2_ENABLED": "1"}})
    return True


def _node_cpus() -> list[float]:
    """CPUs of each live node of the connected Ray cluster."""
    import ray

    return [n["Resources"].get("CPU", 0.0) for n in ray.nodes() if n["Alive"]]


GRID_RECORD = "grid.json"  # the resolved trials of the experiment in this folder


def grid_fingerprint(grid: Grid, data: str | None = None) -> dict:
    return {"name": grid.name, "data": data, "trials": {trial_key(s): s.flat() for s in grid.trials}}


def check_experiment_folder(out: Path | str, grid: Grid, resume: bool, data: str | None = None) -> None:
    """Refuse to mix grids in one folder, to start over a finished run, or to resume nothing.
    `out` is a local folder or a URI (s3://bucket/prefix)."""
    record = storage.join(out, GRID_RECORD)
    if not storage.is_file(record):
        if resume:
            raise ConfigError(f"--resume: {out} holds no experiment to resume (no {GRID_RECORD}); drop --resume to start it")
        if storage.has_entries(out):
            raise ConfigError(f"--out {out} is not empty and holds no ablate experiment; choose another folder")
        return
    try:
        previous = json.loads(storage.read_text(record))
    except json.JSONDecodeError as e:
        raise ConfigError(f"{record}: unreadable ({e})") from None
    mine = json.loads(json.dumps(grid_fingerprint(grid, data), default=str))  # same JSON types as the record
    if previous != mine:
        added = sorted(set(mine["trials"]) - set(previous.get("trials", {})))
        removed = sorted(set(previous.get("trials", {})) - set(mine["trials"]))
        changed = sorted(k for k in set(mine["trials"]) & set(previous.get("trials", {}))
                         if mine["trials"][k] != previous["trials"][k])
        data_note = "" if previous.get("data") == data else f", data {previous.get('data')} -> {data}"
        raise ConfigError(
            f"--out {out} holds a different grid ({previous.get('name')!r}): trials added {added}, removed {removed}, "
            f"changed {changed}{data_note}. Use another --out, or the same grid, data and options to resume."
        )
    if not resume:
        raise ConfigError(f"--out {out} already holds this grid; add --resume to continue it (finished trials are kept)")


def launch(opts: LaunchOptions) -> Path | str | None:
    """Returns the experiment folder (a Path), or its URI (a str) for --out on object storage."""
    from ablate.report.results import collect_results, print_summary, write_results

    grid = resolve_grid(opts)
    if opts.out is not None and storage.is_uri(opts.out):
        out = storage.normalize(opts.out)
        tune_parent, tune_name = storage.split(out)  # Tune's storage_path and run name
    else:
        out = Path(opts.out or Path("runs") / grid.name).resolve()
        tune_parent, tune_name = str(out.parent), out.name
    if opts.data is None:
        from ablate.data.demo import NOTICE, ensure_demo

        print(NOTICE, file=sys.stderr)
        data_dir = str(ensure_demo())
    else:
        data_dir = storage.normalize(opts.data) if storage.is_uri(opts.data) else str(Path(opts.data).resolve())
    check_data(data_dir, grid)
    print(f"grid {grid.name!r} from {grid.source}: {len(grid.trials)} trials -> {out}")
    print(trial_table(grid))
    preflight_losses(grid)  # after the table, so a dry run still shows the grid
    if opts.dry_run:
        return None
    check_experiment_folder(out, grid, opts.resume, data_dir)

    import ray
    from ray import tune

    started_ray = _start_ray(opts.address)
    try:
        placement = plan_placement(ray.cluster_resources().get("CPU", 0), opts.workers, opts.cpus_per_worker,
                                   opts.gpus_per_worker, opts.concurrent, node_cpus=_node_cpus())
        if opts.threads_per_worker is not None:
            if opts.threads_per_worker < 1:
                raise ConfigError(f"--threads-per-worker must be >= 1, got {opts.threads_per_worker}")
            placement = dataclasses.replace(placement, threads_per_worker=opts.threads_per_worker)
        print(f"placement: {placement.workers} worker(s) x {placement.cpus_per_worker:g} CPU"
              f"{f' + {placement.gpus_per_worker:g} GPU' if placement.gpus_per_worker else ''} per trial, "
              f"{placement.concurrent} trial(s) at a time, {placement.threads_per_worker} torch thread(s) per worker")
        trials = {trial_key(s): s for s in grid.trials}
        trainable = tune.with_resources(
            tune.with_parameters(run_trial, trials=trials, data_dir=data_dir, exp_dir=str(out), placement=placement,
                                 max_failures=opts.max_failures),
            {"cpu": placement.driver_cpus},
        )
        if opts.resume:
            # Finished trials are kept as they are; unfinished and errored ones continue
            # from their last checkpoint (each Train run is named after its trial).
            tuner = tune.Tuner.restore(str(out), trainable, resume_unfinished=True, resume_errored=True)
        else:
            storage.write_text(storage.join(out, GRID_RECORD),
                               json.dumps(grid_fingerprint(grid, data_dir), indent=1, default=str) + "\n")
            tuner = tune.Tuner(
                trainable,
                param_space={"trial": tune.grid_search(list(trials))},
                tune_config=tune.TuneConfig(
                    max_concurrent_trials=placement.concurrent,
                    # A finished trial's driver process (torch and Ray Train imported: ~3.5 s
                    # here) runs the next trial instead of a fresh actor starting cold.
                    reuse_actors=True,
                    # Names from the trial id (stable across restore), never timestamps.
                    trial_name_creator=lambda t: f"{t.config['trial']}-{t.trial_id}",
                    trial_dirname_creator=lambda t: f"{t.config['trial']}-{t.trial_id}",
                ),
                run_config=tune.RunConfig(name=tune_name, storage_path=tune_parent,
                                          failure_config=tune.FailureConfig(max_failures=opts.trial_retries)),
            )
        t0 = time.time()
        with _sigterm_as_interrupt():
            result_grid = tuner.fit()
        wall = time.time() - t0
        table = collect_results(result_grid, trials)
        if storage.is_uri(out):
            # Ray reports these as paths on the bucket, without the scheme; store URIs.
            for col in ("checkpoint", "trial_dir"):
                table[col] = table[col].map(lambda p: storage.as_uri(out, p))
        write_results(table, out)
        print_summary(table, wall)
        unfinished = int((table["status"] == "incomplete").sum())
        if opts.evaluate and (table["status"] == "done").any():
            from ablate.evaluate.run import EvalOptions, evaluate_experiment

            evaluated = evaluate_experiment(EvalOptions(exp=str(out), segmenter=opts.segmenter,
                                                        gpus_per_task=min(opts.gpus_per_worker, 1.0)))
            print_summary(evaluated)
        if (table["status"] == "done").any():
            from ablate.report.cli import write_report

            print(f"report: {write_report(out)}")
        if unfinished:
            print(f"{unfinished} trial(s) did not finish. Resume with:\n  ablate launch --grid {opts.grid} "
                  f"--out {out}{'' if opts.data is None else f' --data {opts.data}'} --resume", file=sys.stderr)
        return out
    finally:
        if started_ray:
            ray.shutdown()
