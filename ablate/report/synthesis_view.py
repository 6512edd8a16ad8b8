"""The Synthesis section as both documents render it (ablate.report.synthesis computes it):
tables as text, and for index.html the pictures as PNG data URIs, embedded like the image
grid's so the file still opens offline: each arm's contact sheet (EXP/samples/<trial>/
contact_sheet.png of its lowest seed) beside the same samples with their vessel maps
(eval/sample_vessels/<trial>.png, where evaluation drew it) and its nearest-neighbour strips (the closest
sample-train pairs of eval/sample_neighbours.parquet, sample above train, distance under).
A trial flagged as memorising gets its strips too, whatever its seed.
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from ablate.report.collect import Experiment
from ablate.report.questions import Declared
from ablate.report.render import fmt, paired_table
from ablate.report.synthesis import Synthesis
from ablate.report.text import plain
from ablate.report.views import Question, Table, question_view, text_table, verdict_class

SHEET_PX = 300  # displayed width of a contact sheet
NEIGHBOUR_PX = 96  # displayed side of a nearest-neighbour image
STRIP_PAIRS = 8  # pairs per strip (evaluation keeps the 8 closest)
SPACES = {"features": "in Inception features", "pixels": "in pixels"}


@dataclass(frozen=True)
class ContactSheet:
    """One arm's contact sheet; `uri` "" and `missing` naming the file where there is none."""
    combination: str
    trial: str
    seed: int
    uri: str
    pixelated: bool  # shown larger than drawn: keep the pixels sharp
    missing: str = ""
    vessels_uri: str = ""  # the same samples with their vessel maps; "" where evaluation drew none


@dataclass(frozen=True)
class NeighbourPair:
    sample: str  # PNG data URIs
    train: str
    sample_id: str
    train_id: str
    distance: str


@dataclass(frozen=True)
class NeighbourStrip:
    """One trial's closest pairs, per space (in words: "in Inception features", "in pixels")."""
    combination: str
    trial: str
    seed: int
    spaces: list[tuple[str, list[NeighbourPair]]]


@dataclass(frozen=True)
class SynthesisView:
    counts: str
    memorising: list[str]  # the sentences of flagged trials
    primaries: str  # the declared primaries of Q1s and Q2s, in words
    questions: list[Question]
    sheets: list[ContactSheet]
    metrics: Table
    memorisation: Table
    strips: list[NeighbourStrip]
    neighbours: Table  # the strips' distances, for report.md
    notes: list[str]
    sheet_px: int = SHEET_PX
    cell_px: int = NEIGHBOUR_PX


def png_uri(png: bytes) -> str:
    """PNG bytes as a data URI, unchanged (no re-encoding)."""
    return "data:image/png;base64," + base64.b64encode(bytes(png)).decode()


def _sheet(e: Experiment, arm: str, trial: str, seed: int) -> ContactSheet:
    from PIL import Image

    from ablate.data.sample_store import CONTACT_SHEET
    from ablate.experiment_layout import ExperimentLayout

    try:
        png = (Path(ExperimentLayout(e.exp).trial_samples(trial)) / CONTACT_SHEET).read_bytes()
    except OSError:
        shown = f"{e.location}/samples/{trial}/{CONTACT_SHEET}"
        return ContactSheet(plain(arm), plain(trial), seed, "", False, plain(f"{shown}: not found"))
    width = Image.open(io.BytesIO(png)).size[0]
    try:  # written by evaluations since the vessel pictures were added; older ones have none
        vessels = png_uri(Path(ExperimentLayout(e.exp).eval.sample_vessels(trial)).read_bytes())
    except OSError:
        vessels = ""
    return ContactSheet(plain(arm), plain(trial), seed, png_uri(png), width < SHEET_PX, vessels_uri=vessels)


def _strips(e: Experiment, s: Synthesis) -> list[NeighbourStrip]:
    n = e.sample_neighbours
    if n is None:
        return []
    seeds = dict(zip(e.samples["trial"], e.samples["seed"])) if e.samples is not None else {}
    arms = dict(zip(e.samples["trial"], e.samples["combination"])) if e.samples is not None else {}
    trials = [t for t, _ in s.shown.values()] + [t for t in s.flagged_trials if t not in {t for t, _ in s.shown.values()}]
    out = []
    for trial in trials:
        spaces = []
        for space, words in SPACES.items():
            rows = n[(n["trial"] == trial) & (n["space"] == space)].sort_values("rank").head(STRIP_PAIRS)
            spaces.append((words, [NeighbourPair(png_uri(r["sample_png"]), png_uri(r["train_png"]),
                                                 plain(str(r["sample_id"])), plain(str(r["train_id"])),
                                                 fmt(r["distance"])) for r in rows.to_dict("records")]))
        if any(pairs for _, pairs in spaces):
            out.append(NeighbourStrip(plain(arms[trial]), plain(trial), int(seeds[trial]),
                                      [(w, p) for w, p in spaces if p]))
    return out


def _neighbour_distances(strips: list[NeighbourStrip]) -> pd.DataFrame:
    return pd.DataFrame([{"combination": st.combination, "trial": st.trial, "space": space,
                          "nearest distances (closest first)": ", ".join(p.distance for p in pairs)}
                         for st in strips for space, pairs in st.spaces])


def synthesis_view(e: Experiment, s: Synthesis, declared: Declared) -> SynthesisView:
    """The section's text and pictures.

    Args:
        e: the experiment (its sample tables and folder).
        s: the section's content (ablate.report.synthesis.analyse_samples).
        declared: the primary metrics as declared (Q1s, Q2s and where).
    """
    voting: dict[str, Any] = {"left": ("combination", "against", "metric", "verdict"), "row_class": verdict_class}
    per_image = ["n_images", "images_better", "images_worse", "wilcoxon_p"]  # samples have no image pairs
    questions = [question_view(q, text_table(paired_table(q.tests.drop(columns=per_image, errors="ignore"),
                                                          reference=True), **voting))
                 for q in (s.q1s, s.q2s)]
    strips = _strips(e, s)
    notes = []
    if e.sample_neighbours is None:
        notes.append("eval/sample_neighbours.parquet: not found, so no nearest-neighbour pictures; "
                     "`ablate evaluate` writes it")
    flagged = lambda r: "worse" if r["memorises (features)"] or r["memorises (pixels)"] else ""
    return SynthesisView(
        counts=plain(s.counts), memorising=[plain(m) for m in s.memorising],
        primaries=plain(primaries_text(declared)), questions=questions,
        sheets=[_sheet(e, arm, trial, seed) for arm, (trial, seed) in s.shown.items()],
        metrics=text_table(s.metrics, left=("metric", "better", "note", *s.arms)),
        memorisation=text_table(s.memorisation, left=("trial", "combination"), row_class=flagged),
        strips=strips, neighbours=text_table(_neighbour_distances(strips), left=("combination", "trial", "space",
                                                                                  "nearest distances (closest first)")),
        notes=[plain(x) for x in notes])


def sample_tests(s: Synthesis | None) -> list[pd.DataFrame]:
    """Q1s' and Q2s' tests for report/questions.parquet (question "Q1s" / "Q2s"), none without samples."""
    if s is None:
        return []
    return [t.assign(question=name) for name, t in (("Q1s", s.q1s.tests), ("Q2s", s.q2s.tests)) if not t.empty]


def primaries_text(declared: Declared) -> str:
    """The primaries of Q1s and Q2s, and where they were declared (there are no defaults)."""
    if declared.q1s is None and declared.q2s is None:
        return ("Q1s and Q2s: not declared (the search space's `questions:` has no q1s / q2s), so the samples get "
                "no verdict")
    said = lambda m: ", ".join(m) if m else "not declared"
    return f"Q1s {said(declared.q1s)}; Q2s {said(declared.q2s)} ({declared.source})"
