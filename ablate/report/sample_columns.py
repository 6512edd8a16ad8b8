"""The columns of eval/samples.parquet (one row per trial with samples, written by `ablate
evaluate`) and what each is, read from the `MetricInfo` declared beside the code that
computes it (ablate.evaluate.*), so the report's directions, units and voting rules for
samples come from the same declarations as for reconstructions.

    fid, kid, fd_fm          distribution distances to the real test images (set_metrics'
                             judges; fd_fm in the fundus model named in column `fm`)
    precision, recall, coverage, density   k-NN manifolds in Inception features
                             (sample_manifold; density has no better direction)
    morph_w1.<feature>       W1 between the samples' and the real images' vessel feature, in
                             real SDs (sample_morphology's sample_w1_<feature>)
    morph_floor.<feature>    its real-vs-real split-half floor (split_half_w1_<feature>)
    mem_share, mem_share_px  memorisation share in Inception features / in pixels (a check)

Kept apart from ablate.evaluate.catalogue, which lists the reconstruction metrics a Q1/Q2
may declare: a sample metric names no reconstruction number, so `q1: {primary: [recall]}`
stays an error, and `q1s: {primary: [recall]}` is one of these.
"""

from __future__ import annotations

from ablate.evaluate import fidelity, kid, memorisation, morphology, sample_manifold, sample_morphology
from ablate.metric_info import MetricInfo

MORPH_W1 = "morph_w1."
MORPH_FLOOR = "morph_floor."
FD_FM = "fd_fm"  # the Frechet distance in the fundus model named in the table's `fm` column
SET_DISTANCES = ("fid", "kid", FD_FM)  # NaN where set_metrics could not compute them

# Column -> its declaration, for the columns with one name each.
_EXACT: dict[str, MetricInfo] = {
    "fid": fidelity.FID, "kid": kid.KID, FD_FM: fidelity.FD,
    "precision": sample_manifold.PRECISION, "recall": sample_manifold.RECALL,
    "density": sample_manifold.DENSITY, "coverage": sample_manifold.COVERAGE,
    "mem_share": memorisation.MEMORISED_SHARE, "mem_share_px": memorisation.MEMORISED_SHARE,
}
# Prefix -> the family's declaration; the rest of the name is a vessel feature.
_FAMILIES: dict[str, MetricInfo] = {MORPH_W1: sample_morphology.SAMPLE_W1, MORPH_FLOOR: sample_morphology.SPLIT_HALF_W1}

# The order of the report's table of sample metrics (morph_w1.* follow, in the table's order).
SHOWN = ("fid", "kid", FD_FM, "precision", "recall", "density", "coverage")

# The columns that say who and how much, and the memorisation figures (no metric of their own).
ID_COLUMNS = ("trial", "combination", "seed", "size", "n_samples", "n_real", "n_train", "fm", "segmenter")
MEMORISATION = ("mem_share", "mem_p", "mem_flag", "mem_chance", "mem_share_px", "mem_p_px", "mem_flag_px")
REQUIRED = ("trial", "combination", "seed", "n_samples", "n_real", "n_train", *SHOWN, *MEMORISATION)
NEIGHBOUR_COLUMNS = ("trial", "space", "rank", "sample_id", "train_id", "distance", "sample_png", "train_png")


def sample_info(column: str) -> MetricInfo | None:
    """The declaration of a sample-table column (`morph_w1.density` as sample_w1_), or None
    for a column that is no metric (ids, counts, mem_p, mem_flag) or not in the table."""
    if column in _EXACT:
        return _EXACT[column]
    for prefix, family in _FAMILIES.items():
        if column.startswith(prefix) and column[len(prefix):] in morphology.FEATURES:
            return family
    return None


def sample_vocabulary() -> list[str]:
    """The sample metrics a q1s / q2s may name (or be refused by name), for messages."""
    return [*SHOWN, *(f"{MORPH_W1}{f}" for f in morphology.FEATURES)]


def morph_features(columns) -> list[str]:
    """The vessel features with a morph_w1.<feature> column, in the table's order."""
    return [c[len(MORPH_W1):] for c in columns if c.startswith(MORPH_W1) and sample_info(c) is not None]
