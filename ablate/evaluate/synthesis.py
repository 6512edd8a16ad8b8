"""Judging a trial's samples (issue 28): the images its prior drew (EXP/samples/<trial>/, data/
sample_store.py) against the real images of the grid's own dataset, one row per trial.

Per trial, in one Ray task (`judge_trial`), with the judges of evaluate/ as they are:
- FID / KID in Inception features and FD in the fundus model's features against the test
  split (evaluate/set_metrics.py: the same floors as for reconstructions, NaN below them);
- precision / recall and density / coverage in Inception features (evaluate/sample_manifold.py);
- the vessel features of each sample's map (the experiment's segmenter) as distributions
  against the test images' (evaluate/sample_morphology.py: W1 in real SDs, the split-half floor);
- memorisation (evaluate/memorisation.py) against the train split, calibrated on the test split,
  in Inception features and in pixels (each image inside its FOV, float in [0, 1], flattened),
  with the 8 closest sample-train pairs of each space for the report.
Samples have no FOV mask: a sample's FOV is its red channel thresholded (data/preprocess.
threshold_fov: the largest bright component, holes filled), the rule `prepare` uses for an
image that comes without one. The real images keep the masks `prepare` stored (on prepared
DRIVE at 32 px the two rules give the same masks). The real side (`RealImages`) is computed
once per image size and shared by every trial's task; evaluate/synthesis_tasks.py runs the tasks
and writes the tables.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from ablate.errors import InvalidInput
from ablate.evaluate import fidelity, kid, memorisation, sample_manifold, sample_morphology
from ablate.evaluate.morphology import FEATURES
from ablate.metric_info import Better, MetricInfo

# The columns' MetricInfos (directions for the report's verdicts): the judges' own, under the
# contract's column names (issue 28: eval/samples.parquet).
FD_FM = MetricInfo("fd_fm", Better.LOWER, per_set=True,
                   about="Frechet distance in the fundus model's features (its name in the `fm` column)")
MORPH_W1 = replace(sample_morphology.SAMPLE_W1, name="morph_w1.")
MORPH_FLOOR = replace(sample_morphology.SPLIT_HALF_W1, name="morph_floor.")
# memorisation.MEMORISED_SHARE has no direction (a check: a generator of noise scores 0); the
# report reads a lower share as better (the contract), and it stays out of every vote.
MEM_SHARE = replace(memorisation.MEMORISED_SHARE, name="mem_share", better=Better.LOWER,
                    about=memorisation.MEMORISED_SHARE.about + " (in Inception features)")
MEM_SHARE_PX = replace(MEM_SHARE, name="mem_share_px",
                       about=memorisation.MEMORISED_SHARE.about + " (in pixels inside the FOV)")
MEM_P = MetricInfo("mem_p", None, per_set=True, may_vote=False,
                   about="p-value of the memorised share under samples distributed like the test set "
                         "(beta-binomial; evaluate/memorisation.py), Inception features")
MEM_P_PX = replace(MEM_P, name="mem_p_px", about=MEM_P.about.replace("Inception features", "pixels"))
MEM_CHANCE = MetricInfo("mem_chance", None, per_set=True, may_vote=False,
                        about="the memorised share expected by chance, j / (n_test + 1) (~0.05)")
METRICS: tuple[MetricInfo, ...] = (
    fidelity.FID, kid.KID, FD_FM, *sample_manifold.METRICS, MORPH_W1, MORPH_FLOOR,
    MEM_SHARE, MEM_P, MEM_CHANCE, MEM_SHARE_PX, MEM_P_PX,
)

COLUMNS = ("trial", "combination", "seed", "size", "n_samples", "n_real", "n_train",
           "fid", "kid", "fd_fm", "fm", "precision", "recall", "density", "coverage",
           *(f"{MORPH_W1.name}{f}" for f in FEATURES), *(f"{MORPH_FLOOR.name}{f}" for f in FEATURES),
           "mem_share", "mem_p", "mem_flag", "mem_chance", "mem_share_px", "mem_p_px", "mem_flag_px",
           "segmenter")
NEIGHBOUR_COLUMNS = ("trial", "space", "rank", "sample_id", "train_id", "distance", "sample_png", "train_png")
FOV_NOTE = ("samples have no FOV mask: each sample's FOV is its red channel thresholded (data/preprocess."
            "threshold_fov, holes filled), for its vessel map and its pixels in the memorisation check")


def metric_info(column: str) -> MetricInfo | None:
    """The MetricInfo of an eval/samples.parquet column; None for a column that is no metric."""
    for m in METRICS:
        if column == m.name or (m.family and column.startswith(m.name) and column[len(m.name):] in FEATURES):
            return m
    return None


@dataclass(frozen=True)
class RealImages:
    """The real side every sample of one image size is judged against.

    Args:
        size: the image side in px.
        test_inception, test_fm: the test images' features ((n, d)); None where the network is absent.
        test_vessel: {feature: (n,) values} of the test images' vessel maps.
        test_px: the test images inside their FOV, float32 (n, H*W*3) in [0, 1].
        train_ids: the train images' ids.
        train_images: uint8 (T, H, W, 3), for the neighbour pictures.
        train_inception: (T, 2048) or None.
        train_px: as test_px, for the train images.
        segmenter: the segmenter's name (as evaluation records it).
    """
    size: int
    test_inception: np.ndarray | None
    test_fm: np.ndarray | None
    test_vessel: dict[str, np.ndarray]
    test_px: np.ndarray
    train_ids: list[str]
    train_images: np.ndarray
    train_inception: np.ndarray | None
    train_px: np.ndarray
    segmenter: str


@dataclass(frozen=True)
class Judgement:
    """One trial's row of eval/samples.parquet, its neighbour rows, and its notes (one sentence each)."""
    row: dict
    neighbours: list[dict]
    notes: list[str]
    vessel_sheet: bytes = b""  # PNG: the contact sheet's samples with their vessel maps drawn on (vessel_sheet)


def pixels(images: np.ndarray, fov: np.ndarray) -> np.ndarray:
    """uint8 (N, H, W, 3) inside boolean FOVs (N, H, W) -> float32 (N, H*W*3) in [0, 1], 0 outside."""
    return (images.astype(np.float32) / 255 * np.asarray(fov, bool)[..., None]).reshape(len(images), -1)


def by_feature(rows: list[dict]) -> dict[str, np.ndarray]:
    """Per-image feature dicts -> {feature: (n,) values} in FEATURES' order."""
    return {f: np.array([r[f] for r in rows], np.float64) for f in FEATURES}


def real_images(test: dict, refs: list[dict], train: dict, train_inception: np.ndarray | None) -> RealImages:
    """The real side from what the evaluation already has.

    Args:
        test: the test split (evaluate/run.load_test_split).
        refs: evaluate/run.reference_chunk's outputs over the test split, in order.
        train: the train split, loaded alike.
        train_inception: the train images' Inception features (`inception_features`), or None.
    """
    cat = lambda key: np.concatenate([r[key] for r in refs]) if key in refs[0] else None
    return RealImages(size=int(test["images"].shape[1]), test_inception=cat("inception"), test_fm=cat("fm"),
                      test_vessel=by_feature([f for r in refs for f in r["features"]]),
                      test_px=pixels(test["images"], test["fov"]), train_ids=list(train["ids"]),
                      train_images=train["images"], train_inception=train_inception,
                      train_px=pixels(train["images"], train["fov"]), segmenter=refs[0]["segmenter"])


def inception_features(images: np.ndarray, use_gpu: bool = False, shipped: dict | None = None) -> np.ndarray:
    """The FID Inception's features (N, 2048) of uint8 images (a Ray task over the train split)."""
    import torch

    from ablate.evaluate.reconstruct import to_tensor
    from ablate.evaluate.trial_stages import bring_weights

    torch.set_num_threads(1)
    bring_weights(shipped or {})
    device = _device(use_gpu)
    return _inception(to_tensor(images).to(device), device)


def _inception(x, device: str) -> np.ndarray:
    """Features in fp32 (FID / KID come from covariances, which bf16 would shift), as evaluation's."""
    from ablate.backbones.inception import FIDInception

    return FIDInception().to(device)(x).cpu().numpy()


def _device(use_gpu: bool) -> str:
    import torch

    if use_gpu and not torch.cuda.is_available():
        raise RuntimeError("evaluation asked for a GPU (--gpus-per-task) but this Ray task sees none")
    return "cuda" if use_gpu else "cpu"


def judge_trial(identity: dict, folder: str, real: RealImages, segmenter: str, nets: dict,
                morphology: str = "ablate", use_gpu: bool = False, shipped: dict | None = None) -> Judgement:
    """One trial's samples judged (module docstring); a Ray task (num_cpus=1, num_gpus as evaluation's).

    Args:
        identity: the trial's {"trial", "combination", "seed"} (results.parquet's).
        folder: its samples folder (ExperimentLayout(exp).trial_samples(trial)).
        real: the real side at the trial's image size (`real_images`).
        segmenter: the spec `load_segmenter` takes (the experiment's evaluation segmenter).
        nets: the feature networks present ({"inception": bool, "fm": model name}).
        morphology: the vessel-feature definitions ("ablate" or "automorph").
        use_gpu: run the networks on the task's GPU (refused when it sees none).
        shipped: pretrained files another node fetched (brought here first).
    """
    import torch

    from ablate.data.preprocess import threshold_fov
    from ablate.data.sample_store import read_samples
    from ablate.evaluate.automorph import features_for
    from ablate.evaluate.reconstruct import to_tensor, vessel_maps
    from ablate.evaluate.set_metrics import set_metrics
    from ablate.evaluate.trial_stages import bring_weights, fm_extractor
    from ablate.segmenter.unet_file import load_segmenter

    torch.set_num_threads(1)
    bring_weights(shipped or {})
    device = _device(use_gpu)
    samples = read_samples(folder)
    if samples.images.shape[1:3] != (real.size, real.size):
        raise InvalidInput(f"{folder}: samples are {samples.images.shape[1]}x{samples.images.shape[2]} px, the "
                           f"trial's images {real.size} px; draw them again with this trial's autoencoder")
    notes = [FOV_NOTE]
    fov = np.stack([threshold_fov(im) for im in samples.images])
    x = to_tensor(samples.images).to(device)
    inc = _inception(x, device) if real.test_inception is not None else None
    fm = fm_extractor(nets["fm"]).to(device)(x).cpu().numpy() if real.test_fm is not None else None
    sets, short = set_metrics(real.test_inception, inc, real.test_fm, fm, nets.get("fm"))
    notes += [f"samples: {s}" for s in short]
    row: dict = {**identity, "size": real.size, "n_samples": len(samples.images), "n_real": len(real.test_px),
                 "n_train": len(real.train_ids), "fid": sets["test/fid"], "kid": sets["test/kid"],
                 "fd_fm": sets.get(f"test/fd_{nets.get('fm')}", math.nan), "fm": nets.get("fm") or ""}
    row.update(_manifold(real.test_inception, inc, notes))
    seg = load_segmenter(segmenter, device=device)
    vessel_features = features_for(morphology)[0]
    maps = vessel_maps(seg, x, fov)
    feats = [vessel_features(m, f) for m, f in zip(maps, fov)]
    dark = [i for i, f in enumerate(fov) if not f.any()]
    for i in dark:  # no FOV, no vessel: density reads 0 (NaN would be refused as a fault)
        feats[i]["density"] = 0.0
    if dark:
        notes.append(f"{len(dark)} sample(s) of {identity['trial']} have no FOV (all dark): their vessel "
                     "features read no vessels")
    row.update(_morphology(by_feature(feats), real.test_vessel, notes))
    neighbours: list[dict] = []
    spaces = {"features": (inc, real.train_inception, real.test_inception, ""),
              "pixels": (pixels(samples.images, fov), real.train_px, real.test_px, "_px")}
    for space, (s, train, test, suffix) in spaces.items():
        if s is None or train is None or test is None:
            row.update({f"mem_share{suffix}": math.nan, f"mem_p{suffix}": math.nan, f"mem_flag{suffix}": None})
            notes.append(f"samples: memorisation in {space} not computed: no Inception features")
            continue
        m = memorisation.memorisation(s, train, test)
        row.update({f"mem_share{suffix}": m.share, f"mem_p{suffix}": m.p_value, f"mem_flag{suffix}": m.memorising})
        if space == "features":
            row["mem_chance"] = m.expected_share
        neighbours += [{"trial": identity["trial"], "space": space, "rank": k, "sample_id": samples.ids[p.sample],
                        "train_id": real.train_ids[p.train], "distance": p.distance,
                        "sample_png": _png(samples.images[p.sample]), "train_png": _png(real.train_images[p.train])}
                       for k, p in enumerate(m.closest)]
    row.setdefault("mem_chance", math.nan)
    row["segmenter"] = seg.name
    return Judgement(row={c: row[c] for c in COLUMNS}, neighbours=neighbours, notes=notes,
                     vessel_sheet=vessel_sheet(samples.images, maps))


VESSEL_RGB = (0, 255, 255)  # cyan: no fundus colour is near it


def vessel_sheet(images: np.ndarray, maps: np.ndarray) -> bytes:
    """The contact sheet's samples (the first SHEET, as data/sample_store draws it) with their
    vessel maps painted cyan: what the morphology W1 numbers were read from, for the report.

    Args:
        images: uint8 (N, H, W, 3) samples.
        maps: bool (N, H, W) their vessel maps.
    """
    from ablate.data.sample_store import contact_sheet
    from ablate.prior.draw import SHEET

    shown = images[:SHEET].copy()
    shown[maps[:SHEET]] = VESSEL_RGB
    return contact_sheet(shown)


def _png(image: np.ndarray) -> bytes:
    from ablate.data.preprocess import png_bytes

    return png_bytes(image)


def _manifold(real: np.ndarray | None, fake: np.ndarray | None, notes: list[str]) -> dict[str, float]:
    """Precision / recall and density / coverage, NaN (with a note) where a set is below the k-NN minimum."""
    out = dict.fromkeys(("precision", "recall", "density", "coverage"), math.nan)
    if real is None or fake is None:
        notes.append("samples: precision, recall, density and coverage not computed: no Inception features")
        return out
    k_pr, k_dc = sample_manifold.K_PRECISION_RECALL, sample_manifold.K_DENSITY_COVERAGE
    if min(len(real), len(fake)) > k_pr:
        out.update(sample_manifold.precision_recall(real, fake))
    else:
        notes.append(f"samples: precision and recall not computable at {len(fake)} samples and {len(real)} test "
                     f"images: k = {k_pr} needs at least {k_pr + 1} of each; NaN in the tables")
    if len(real) > k_dc:
        out.update(sample_manifold.density_coverage(real, fake))
    else:
        notes.append(f"samples: density and coverage not computable at {len(real)} test images: k = {k_dc} "
                     f"needs at least {k_dc + 1}; NaN in the tables")
    return out


def _morphology(samples: dict[str, np.ndarray], real: dict[str, np.ndarray], notes: list[str]) -> dict[str, float]:
    """morph_w1.<f> and morph_floor.<f>: sample_morphology's sample_w1_<f> and split_half_w1_<f>."""
    n = len(next(iter(real.values())))
    if n < sample_morphology.MIN_REAL:
        notes.append(f"samples: vessel morphology distances not computable at {n} test images: the split-half "
                     f"floor needs at least {sample_morphology.MIN_REAL}; NaN in the tables")
        return {f"{p.name}{f}": math.nan for p in (MORPH_W1, MORPH_FLOOR) for f in FEATURES}
    metrics = sample_morphology.as_metrics(sample_morphology.morphology_distances(samples, real))
    return {f"{MORPH_W1.name}{f}": metrics[f"{sample_morphology.SAMPLE_W1.name}{f}"] for f in FEATURES} | \
        {f"{MORPH_FLOOR.name}{f}": metrics[f"{sample_morphology.SPLIT_HALF_W1.name}{f}"] for f in FEATURES}
