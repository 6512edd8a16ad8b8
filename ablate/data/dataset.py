"""What a prepared dataset is made of: file names, the row schema, the manifest (its
model), the error type, and what `prepare` returns. Shared by the writer (prepare_run,
shard_writer) and the readers (shards.read_manifest / shard_paths, unchanged)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import pyarrow as pa
from pydantic import AfterValidator, Field, model_validator

from ablate.errors import AblateError
from ablate.schemas import Count, Positive, Sha256, ShapeModel, described, whole_line
from ablate.specs import SplitMissing

MANIFEST = "manifest.json"
REJECTS = "rejects.csv"
FORMAT_VERSION = 1
SPLITS = ("train", "val", "test")
SPLIT_MISSING = tuple(s.value for s in SplitMissing)  # what to do with images a present split.csv does not list
SCHEMA = pa.schema(
    [
        ("id", pa.string()),  # sha256 of the source file's bytes, first 16 hex digits
        ("source", pa.string()),  # file name relative to the prepared SRC folder (or the --index file's)
        ("split", pa.string()),
        ("image", pa.binary()),  # PNG, RGB uint8, size x size
        ("fov", pa.binary()),  # PNG, 0/255
        ("vessel", pa.binary()),  # PNG, 0/255; null when the dataset has no vessel masks
        ("orig_height", pa.int32()),
        ("orig_width", pa.int32()),
        ("fov_source", pa.string()),  # "mask" or "threshold"
    ]
)
# Beside SCHEMA in the shards of a dataset that has vessel masks (a dataset without any has none
# of them, and the bytes it had before soft references): data/soft_reference.py.
SOFT_SCHEMA = pa.schema(
    [
        ("vessel_soft", pa.binary()),  # PNG, uint8 round(255 * area fraction of the resized mask); null without a mask
        ("vessel_area_lost", pa.float64()),  # 1 - binary vessel pixels / soft sum; null without a mask
        ("vessel_length_lost", pa.float64()),  # 1 - binary skeleton / skeleton of soft > 0; null without a mask
    ]
)
# Everything a prepared folder may hold (with atomic_path's temporary files of them).
OWNED = re.compile(r"\.?(manifest\.json|rejects\.csv|[a-z]+-\d{5}\.parquet)(\.[0-9a-z_]+\.tmp)?")


def _inside_folder(name: str) -> str:
    # The pattern allows dots; ".." would still climb out once joined to the folder.
    if ".." in name:
        raise ValueError("'..' in a shard's file name")
    return name


# A shard's file is a plain name inside the dataset folder: never a path out of it.
if TYPE_CHECKING:  # a type checker cannot evaluate described(): to it each is its Python type
    ShardFile = str
    Split = str
else:
    ShardFile = described(str, "a .parquet file name inside the dataset folder (no '/' or '..')",
                          Field(pattern=r"^[A-Za-z0-9_.-]+\.parquet$"), AfterValidator(_inside_folder))
    Split = described(Literal[SPLITS], "one of 'train', 'val', 'test'", kind=str)


class ShardEntry(ShapeModel):
    """One shard of the manifest: its file, split, row count and checksum."""
    file: ShardFile
    split: Split
    rows: Count
    sha256: Sha256


class LabelColumn(ShapeModel):
    """One label column of an --index file (data/index.py), as manifest.json lists it: its
    values (sorted; a conditional prior numbers them in this order), and per split how many
    images carry each value and how many carry none."""
    values: list[str]
    counts: dict[str, dict[str, Count]]  # split -> value -> images
    missing: dict[str, Count]  # split -> images whose cell was empty


class ReferenceLoss(ShapeModel):
    """Per split, what the binary vessel reference lost against the soft one
    (data/soft_reference.py): over the images with a vessel mask, the mean and max fraction of
    the vessel area and of the skeleton length."""
    images: Count
    area_lost_mean: float
    area_lost_max: float
    length_lost_mean: float
    length_lost_max: float


class VesselReference(ShapeModel):
    """manifest.json's `vessel_reference`: how the binary (`vessel`) and the soft (`vessel_soft`)
    references were made from the full-resolution mask, what the loss columns measure, and
    their summary per split (a split without any mask is not listed)."""
    binary: str
    soft: str
    area_lost: str
    length_lost: str
    loss: dict[str, ReferenceLoss]


class Manifest(ShapeModel):
    """manifest.json: what `prepare` writes last (a folder holding one holds every shard it
    names) and every reader checks first. Its bytes are the dataset's identity (data/identity.py):
    `to_json` writes them the same for the same dataset. The required fields first, in the order
    a reader checks them."""
    format_version: int
    image_size: Positive
    counts: dict[str, Count]  # split -> images
    shards: list[ShardEntry]
    source: str = ""  # the prepared folder, or the --index file
    rejected: Count = 0  # inputs that could not be used (rejects.csv)
    preprocessing: dict = Field(default_factory=dict)  # how the photographs were turned into rows, in words and numbers
    # The label columns of an --index file, by name (a string column each in the shards); a
    # dataset without any has none, and its manifest.json no `labels` key.
    labels: dict[str, LabelColumn] = Field(default_factory=dict)
    # The vessel references of a dataset with vessel masks; None (no key) for one without any,
    # or one prepared before soft references were kept.
    vessel_reference: VesselReference | None = None

    @model_validator(mode="after")
    def _counts_match_shards(self) -> Manifest:
        # The counts say which splits hold images, the shards where they are: they must agree.
        for split in sorted(set(self.counts) | {s.split for s in self.shards}):
            rows = sum(s.rows for s in self.shards if s.split == split)
            if self.counts.get(split, 0) != rows:
                raise whole_line(f"counts.{split} is {self.counts.get(split, 0)} but its shards hold {rows} rows")
        # Every image of a split either carries one of a label's values or none.
        for name, label in self.labels.items():
            if label.values != sorted(set(label.values)):
                raise whole_line(f"labels.{name}: values are not sorted and distinct")
            for split, by_value in label.counts.items():
                unknown = sorted(set(by_value) - set(label.values))
                if unknown:
                    raise whole_line(f"labels.{name}: counts.{split} names {unknown}, which are not among the values")
            for split, n in self.counts.items():
                labelled = sum(label.counts.get(split, {}).values()) + label.missing.get(split, 0)
                if labelled != n:
                    raise whole_line(f"labels.{name}: {labelled} images of {split} counted but counts.{split} is {n}")
        return self

    def to_json(self) -> str:
        """manifest.json's text: sorted keys, so the same dataset gives the same bytes (and a
        dataset without labels or vessel masks the bytes it had before those were kept)."""
        absent = ({"labels"} if not self.labels else set()) | \
            ({"vessel_reference"} if self.vessel_reference is None else set())
        return json.dumps(self.model_dump(mode="json", exclude=absent or None), indent=2, sort_keys=True) + "\n"


class DatasetError(AblateError, ValueError):
    """A prepared dataset is missing, incomplete, or does not match its manifest."""


@dataclass(frozen=True)
class PrepareResult:
    out: Path | str  # a local folder, or the URI written to
    counts: dict[str, int]
    rejects: list[tuple[str, str]]
    changed: bool  # False when an identical dataset was already there
    notes: list[str] = field(default_factory=list)  # lines for the user (recovery, unlisted images)
    resumed: int = 0  # files whose result an interrupted earlier run had already computed (checksum-verified)
    processed: int = 0  # files read and preprocessed by this run
    seconds: float = 0.0  # wall time of the read + preprocess stage
