"""Where each file of an experiment folder lives: the one place its names are spelled.

An experiment folder (local or on object storage) is written by `ablate launch`, added to by
`ablate evaluate` and read by `ablate report`, `ablate tensorboard` and the terminal summary;
they all ask `ExperimentLayout` for a path, as the readers and writer of a prepared dataset ask
`data/dataset.py` for its names::

    EXP/
      grid.json                  the resolved trials of the grid (what was launched)
      results.parquet / .csv     one row per trial (launch), test means merged in (evaluate)
      .ablate.lock(.json)        the one-writer lock (local) or lease (object storage)
      train/<run>/<trial>/       Ray Train's folders: each trial's checkpoints
      tensorboard/<trial>/       training curves (and stage-<name>/ of a pretraining stage)
      logs/                      Ray's output and the driver's log
      eval/per_image.parquet     one row per (trial, test image)
      eval/notes.json            what evaluation used and skipped
      samples/<trial>/           a trial's synthetic images when the grid has `prior:`
                                 (chunk-NNNNN.parquet, written once each; contact_sheet.png),
                                 and its prior's code shards and Train run (prior/)
      eval/samples.parquet       one row per trial: the samples judged (distances, P/R,
                                 D/C, morphology W1, memorisation)
      eval/sample_neighbours.parquet  each trial's closest sample-train pairs
      eval/sample_vessels/<trial>.png  its contact-sheet samples with their vessel maps
                                 (the evaluation's segmenter), as the morphology W1 read them
      eval/datasets/<key>/       the same three files for another dataset (per_image,
                                 set_metrics.parquet, notes.json)
      report/index.html, report.md
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from ablate import storage
from ablate.lock import LEASE_FILE, LOCK_FILE

GRID_FILE = "grid.json"
RESULTS_FILE = "results.parquet"
RESULTS_CSV = "results.csv"  # the same table for spreadsheets (formula-safe cells)
TENSORBOARD_DIR = "tensorboard"
TRAIN_DIR = "train"  # Ray Train's storage_path: each trial's checkpoints, under the trial's folder
LOGS_DIR = "logs"
EVAL_DIR = "eval"
DATASETS_DIR = "datasets"  # under eval/: one folder per other dataset evaluated
PER_IMAGE_FILE = "per_image.parquet"
SET_METRICS_FILE = "set_metrics.parquet"
NOTES_FILE = "notes.json"
SAMPLES_DIR = "samples"  # EXP/samples/<trial>/: draws of the trial's prior (data/sample_store.py)
SAMPLE_TABLE = "samples.parquet"  # under eval/: the samples judged, one row per trial
SAMPLE_NEIGHBOURS = "sample_neighbours.parquet"  # under eval/: closest sample-train pairs per trial
SAMPLE_VESSELS_DIR = "sample_vessels"  # under eval/: <trial>.png, the contact sheet's samples with their vessel maps
REPORT_DIR = "report"
SEARCH_DIR = "search"  # tuned arms' stage 1: one Tune experiment per combination, and its tables
SEARCH_TRIALS = "trials.parquet"  # under search/: one row per stage-1 trial (train/search.py)
SEARCH_CHOSEN = "chosen.json"  # under search/: each searched combination's best point, once its search ended
REPORT_HTML = "index.html"
REPORT_MD = "report.md"
# Files that may sit in a folder before anything was launched into it (the lock a launch takes).
LOCK_FILES = (LOCK_FILE, LEASE_FILE)


@dataclass(frozen=True)
class EvalLayout:
    """One evaluation's folder: EXP/eval, or EXP/eval/datasets/<key> for another dataset.

    Args:
        folder: the folder (a local path or a URI), as `storage.join` builds it.
    """
    folder: str

    @property
    def per_image(self) -> str:
        return storage.join(self.folder, PER_IMAGE_FILE)

    @property
    def set_metrics(self) -> str:
        return storage.join(self.folder, SET_METRICS_FILE)

    @property
    def notes(self) -> str:
        return storage.join(self.folder, NOTES_FILE)

    @property
    def samples(self) -> str:
        return storage.join(self.folder, SAMPLE_TABLE)

    @property
    def sample_neighbours(self) -> str:
        return storage.join(self.folder, SAMPLE_NEIGHBOURS)

    def sample_vessels(self, trial: str) -> str:
        return storage.join(self.folder, SAMPLE_VESSELS_DIR, f"{trial}.png")


@dataclass(frozen=True)
class ExperimentLayout:
    """The paths of one experiment folder's files (strings: local paths or URIs).

    Args:
        root: the experiment folder, a local path or a URI (s3://, gs://).
    """
    root: str

    def __init__(self, root: str | os.PathLike) -> None:
        object.__setattr__(self, "root", str(root))

    def _at(self, *parts: str) -> str:
        return storage.join(self.root, *parts)

    @property
    def grid(self) -> str:
        return self._at(GRID_FILE)

    @property
    def results(self) -> str:
        return self._at(RESULTS_FILE)

    @property
    def results_csv(self) -> str:
        return self._at(RESULTS_CSV)

    @property
    def tensorboard(self) -> str:
        return self._at(TENSORBOARD_DIR)

    def tensorboard_run(self, name: str) -> str:
        """A trial's (or a stage's) TensorBoard folder."""
        return self._at(TENSORBOARD_DIR, name)

    @property
    def train(self) -> str:
        return self._at(TRAIN_DIR)

    @property
    def logs(self) -> str:
        return self._at(LOGS_DIR)

    @property
    def eval(self) -> EvalLayout:
        """The experiment's own evaluation (its grid's dataset)."""
        return EvalLayout(self._at(EVAL_DIR))

    @property
    def datasets(self) -> str:
        """The folder holding one evaluation folder per other dataset."""
        return self._at(EVAL_DIR, DATASETS_DIR)

    def dataset_eval(self, key: str) -> EvalLayout:
        """The evaluation on another dataset, kept apart from the experiment's own."""
        return EvalLayout(self._at(EVAL_DIR, DATASETS_DIR, key))

    def evaluation(self, key: str | None) -> EvalLayout:
        """`dataset_eval(key)` for another dataset, `eval` for the grid's own (key None)."""
        return self.dataset_eval(key) if key else self.eval

    @property
    def samples(self) -> str:
        """The folder holding one folder of synthetic images per trial with a prior."""
        return self._at(SAMPLES_DIR)

    def trial_samples(self, trial: str) -> str:
        """One trial's samples (chunk-NNNNN.parquet, contact_sheet.png) and its prior (prior/)."""
        return self._at(SAMPLES_DIR, trial)

    @property
    def search(self) -> str:
        """Stage 1 of tuned arms: the searches, their trials table and the chosen points."""
        return self._at(SEARCH_DIR)

    def search_run(self, combination: str) -> str:
        """One combination's search: a Tune experiment (restored on --resume), its Train runs inside."""
        return self._at(SEARCH_DIR, combination)

    @property
    def search_trials(self) -> str:
        return self._at(SEARCH_DIR, SEARCH_TRIALS)

    @property
    def search_chosen(self) -> str:
        return self._at(SEARCH_DIR, SEARCH_CHOSEN)

    @property
    def report(self) -> str:
        return self._at(REPORT_DIR)

    @property
    def report_html(self) -> str:
        return self._at(REPORT_DIR, REPORT_HTML)

    @property
    def report_md(self) -> str:
        return self._at(REPORT_DIR, REPORT_MD)


__all__ = [
    "DATASETS_DIR", "EVAL_DIR", "GRID_FILE", "LOCK_FILES", "LOGS_DIR", "NOTES_FILE", "PER_IMAGE_FILE", "REPORT_DIR",
    "REPORT_HTML", "REPORT_MD", "RESULTS_CSV", "RESULTS_FILE", "SAMPLES_DIR", "SAMPLE_NEIGHBOURS", "SAMPLE_TABLE",
    "SEARCH_CHOSEN", "SEARCH_DIR", "SEARCH_TRIALS", "SET_METRICS_FILE", "TENSORBOARD_DIR", "TRAIN_DIR", "EvalLayout",
    "ExperimentLayout",
]
