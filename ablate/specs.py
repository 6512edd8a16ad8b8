"""What a trial is, as frozen values: the spec dataclasses a search space is read into
(`ablate.config`, at the top) and that every stage below receives by value (train, fm,
segmenter, runtime, data, evaluate), the configuration error, and the option vocabularies.

A leaf: it imports only ablate.errors (another leaf) and no torch, so any layer may import it and
no layer needs the YAML loader to know what a spec is.

The field types say how strictly a YAML value is read (pydantic validates these same
dataclasses in `ablate.config`): a bool is no integer, "3" is no number, a number must be
finite, an integer is taken where a number is asked for. Unknown keys are refused.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from enum import Enum
from typing import Annotated, Any

from pydantic import AllowInfNan, BeforeValidator, ConfigDict, Field, Strict, StrictBool, StrictInt, StrictStr

from ablate.errors import AblateError


class Choice(str, Enum):
    """A closed set of option values (typer shows and checks them). str() is the value, so a
    member prints as what the user typed on any Python."""

    def __str__(self) -> str:
        return str(self.value)


class PrecisionSetting(Choice):
    """`train.precision` / `launch --precision` (ablate/runtime/precision.py resolves it per device)."""
    auto = "auto"  # bf16 on CUDA, fp32 on the CPU
    bf16 = "bf16"
    fp16 = "fp16"  # CUDA only, with a GradScaler
    fp32 = "fp32"


class EvalSplit(Choice):
    """`evaluate --split`: the test split, or every split of another prepared dataset."""
    test = "test"
    all = "all"


class Morphology(Choice):
    """`evaluate --morphology`: whose vessel-feature definitions (ablate/evaluate/automorph.py)."""
    ablate = "ablate"
    automorph = "automorph"


class SplitMissing(Choice):
    """`prepare --split-missing`: images a present split.csv does not list."""
    skip = "skip"  # listed in rejects.csv; the split stays exactly as written
    train = "train"


PRECISIONS = tuple(p.value for p in PrecisionSetting)  # train.precision
# A trial's seed reaches torch.manual_seed (0..2^64-1), numpy's SeedSequence (any int >= 0) and the
# results table (int64); 2^32-1 is numpy's legacy np.random.seed limit, the narrowest seeding range
# in common use, so a seed from here works in any tool that re-runs or analyses a trial.
SEED_MAX = 2**32 - 1
PLAIN_NAME = re.compile(r"[A-Za-z0-9_.-]+")  # the grid's `name:` (a folder under runs/)


class ConfigError(AblateError, ValueError):
    """A search space or override is invalid; the message names file and key."""


# A YAML number: an int or a float (never a bool or a string), finite, kept as a float.
Number = Annotated[float, Strict(), AllowInfNan(False)]
# A nested block left empty in YAML (`augment:` or `augment: null`) means its defaults, as a
# missing key does.
NullIsDefaults = BeforeValidator(lambda v: {} if v is None else v)
# How pydantic reads each spec from YAML: a key the spec does not have is refused.
READ_FROM_YAML = ConfigDict(extra="forbid")


@dataclass(frozen=True)
class AugmentSpec:
    __pydantic_config__ = READ_FROM_YAML
    hflip: StrictBool = True
    vflip: StrictBool = False
    rotate_deg: Number = 10.0  # uniform in [-rotate_deg, rotate_deg]


@dataclass(frozen=True)
class DataSpec:
    __pydantic_config__ = READ_FROM_YAML
    size: StrictInt = 256
    augment: Annotated[AugmentSpec, NullIsDefaults] = field(default_factory=AugmentSpec)
    # Each Train worker keeps its decoded share of the train split in memory when it
    # fits in this many MiB (decode once per trial, not per epoch); 0 = stream every epoch.
    cache_mb: Number = 4096


@dataclass(frozen=True)
class ModelSpec:
    preset: str = "paper256"
    # Any architecture field of the preset can be overridden here.
    overrides: dict = field(default_factory=dict)
    # {family, channel, filter options}: an edge map appended as a 4th channel
    # the autoencoder reconstructs (the paper's edge variant); None = RGB only.
    edge_channel: dict | None = None


@dataclass(frozen=True)
class TrainSpec:
    __pydantic_config__ = READ_FROM_YAML
    steps: StrictInt = 1000
    epochs: StrictInt | None = None  # when set, train for whole epochs instead of `steps`
    batch_size: StrictInt = 16  # global batch, split evenly over workers
    lr: Number = 4.5e-6
    betas: tuple[Number, Number] = (0.5, 0.9)
    log_every: StrictInt = 10
    image_every: StrictInt = 100
    val_every: StrictInt = 100
    val_batches: StrictInt = 4
    checkpoint_every: StrictInt = 500
    # Model and batches in channels_last memory format: 1.2x faster convolutions for
    # paper256 on this CPU (BENCHMARKS.md), and the layout tensor cores want on GPU.
    channels_last: StrictBool = True
    # Autocast of the training step and validation (ablate/runtime/precision.py says what
    # stays fp32 and why): auto = bf16 on CUDA, fp32 on the CPU; fp16 (CUDA only) uses a GradScaler.
    # A plain string, checked against PRECISIONS by the loader (its message names the key path).
    precision: Annotated[StrictStr, Field(json_schema_extra={"enum": list(PRECISIONS)})] = "auto"
    # torch.compile the autoencoder (in place: checkpoints keep eager key names). Compiling
    # happens in the first step (and the first validation), so time/first_step_s and
    # time/startup/compiled_s include it; compare with an eager run's first step.
    compile: StrictBool = False


@dataclass(frozen=True)
class LossSpec:
    """What a search space says about one loss term, carried by value to the workers."""
    __pydantic_config__ = READ_FROM_YAML
    name: StrictStr
    weight: Number = 1.0
    start_step: StrictInt = 0  # the term is off (contributes 0) before this step
    adaptive: StrictBool = False  # taming-style gradient-norm balancing at the decoder's last layer
    options: dict = field(default_factory=dict)  # the term's own options (its factory's keywords)


@dataclass(frozen=True)
class PriorSpec:
    """`prior:` a transformer prior over the trial's code grid, trained after the autoencoder,
    then sampled: the trial becomes a generator (ablate/prior/). Defaults are the authors'
    prior (12 layers, 8 heads, width 512, pkeep 0.9); `prior: {}` uses them all."""
    __pydantic_config__ = READ_FROM_YAML
    layers: StrictInt = 12
    heads: StrictInt = 8
    width: StrictInt = 512
    dropout: Number = 0.0
    pkeep: Number = 0.9  # training inputs: each code kept with this probability, else a random code
    steps: StrictInt = 2000
    batch_size: StrictInt = 16  # global, split evenly over the workers
    # The optimiser's rate: the authors' base rate 4.5e-6 x batch 16, as taming scales it.
    lr: Number = 7.2e-5
    samples: StrictInt = 64  # images the trial draws (more later with `ablate sample`)
    top_k: StrictInt | None = None  # sample from the k most likely codes; None: all
    temperature: Number = 1.0
    seed: StrictInt | None = None  # None: the trial's seed (each trained generator is one unit)
    log_every: StrictInt = 20
    checkpoint_every: StrictInt = 500
    # A label column of the dataset (`prepare --index`: data/labels.py): each value a start token,
    # samples drawn in the train split's label frequencies; None: unconditional.
    condition: StrictStr | None = None


@dataclass(frozen=True)
class TrialSpec:
    combination: str
    seed: int
    data: DataSpec
    model: ModelSpec
    train: TrainSpec
    losses: tuple[LossSpec, ...]
    prior: PriorSpec | None = None  # None: reconstruction only (no synthesis stage)

    @property
    def prior_seed(self) -> int | None:
        """The seed of the trial's prior (its own `seed`, else the trial's); None without a prior."""
        if self.prior is None:
            return None
        return self.seed if self.prior.seed is None else self.prior.seed

    def flat(self) -> dict[str, Any]:
        """Every config value under a dotted key, for result tables and hparams."""
        out: dict[str, Any] = {"combination": self.combination, "seed": self.seed}
        _flatten("data", dataclasses.asdict(self.data), out)
        _flatten("model", {"preset": self.model.preset, **self.model.overrides,
                           "edge_channel": self.model.edge_channel}, out)
        _flatten("train", dataclasses.asdict(self.train), out)
        for spec in self.losses:
            _flatten(f"loss.{spec.name}", {k: v for k, v in dataclasses.asdict(spec).items() if k != "name"}, out)
        if self.prior is not None:
            prior = {**dataclasses.asdict(self.prior), "seed": self.prior_seed}
            if prior["condition"] is None:  # an unconditional prior's record as before conditions existed
                del prior["condition"]
            _flatten("prior", prior, out)
        return out


class SearchAlgorithm(Choice):
    """`tune.algorithm`: how stage 1 proposes the next point of a combination's space."""
    optuna = "optuna"  # Optuna's TPE sampler (Ray Tune's OptunaSearch); the `tune` extra installs it
    random = "random"  # independent draws (Ray Tune's BasicVariantGenerator)


class SchedulerChoice(Choice):
    """`tune.scheduler`: whether stage 1 stops trials early on the objective."""
    asha = "asha"  # asynchronous successive halving on the objective at the val reports
    none = "none"  # every stage-1 trial trains its full steps


class DistributionKind(Choice):
    """The distributions a searched key is drawn from: `{loguniform: [low, high]}` and so on."""
    loguniform = "loguniform"  # low > 0
    uniform = "uniform"
    choice = "choice"  # a list of values
    randint = "randint"  # integers low <= k < high


# The objectives stage 1 may maximise or minimise: validation metrics the loop reports at
# every val report (ablate/train/loop.py `validate`) that are no sum of training terms.
# val/loss/* are the arms' own terms, refused by name (ablate.config).
OBJECTIVES = {"val/psnr": "max"}

# The keys a `space:` may search, as they are written in a combination: any loss term's
# weight or start step, and the learning rate. Architecture and data keys change what a
# trial is, not how it is weighted, and `train.steps` is the scheduler's own axis.
LOSS_FIELDS = ("weight", "start_step")
TRAIN_FIELDS = ("lr",)


@dataclass(frozen=True)
class Distribution:
    """One searched key's distribution: `kind` and its arguments ([low, high] or the choices)."""
    kind: DistributionKind
    args: tuple

    def describe(self) -> str:
        return f"{self.kind.value}{list(self.args)}"


@dataclass(frozen=True)
class TuneSpec:
    """`tune:` of a search space.

    Args:
        objective: a validation metric no arm trains on (`OBJECTIVES`), e.g. val/psnr.
        mode: "max" or "min", the objective's better direction.
        budget: stage-1 trials per combination, the as-written configuration included (it runs
            first, so the report can show the untuned default's score beside the best).
        algorithm: how the next point is proposed (`SearchAlgorithm`).
        scheduler: early stopping on the objective (`SchedulerChoice`).
        space: combination -> {searched key -> Distribution}; combinations absent here are
            not searched (stage 2 retrains them as written).
        search_seed: the seed of every stage-1 trial (the same for all points, so points are
            compared at one initialisation), never one of the stage-2 `seeds:`.
        grace_steps: ASHA's first rung: no trial is stopped before this many steps.
    """
    objective: str
    mode: str
    budget: int
    algorithm: SearchAlgorithm
    scheduler: SchedulerChoice
    space: dict[str, dict[str, Distribution]] = field(default_factory=dict)
    search_seed: int = 0
    grace_steps: int = 1

    def searched(self, combination: str) -> dict[str, Distribution]:
        return self.space.get(combination, {})

    def record(self) -> dict:
        """As JSON values (grid.json fingerprints it: a resumed launch must search the same space)."""
        return {"objective": self.objective, "mode": self.mode, "budget": self.budget,
                "algorithm": self.algorithm.value, "scheduler": self.scheduler.value,
                "search_seed": self.search_seed, "grace_steps": self.grace_steps,
                "space": {c: {k: {d.kind.value: list(d.args)} for k, d in keys.items()}
                          for c, keys in sorted(self.space.items())}}


def split_key(key: str) -> tuple[str, ...]:
    """`losses.edge.weight` -> ("losses", "edge", "weight"), checked against what may be searched;
    a ValueError says what may be."""
    parts = tuple(key.split("."))
    if len(parts) == 3 and parts[0] == "losses" and parts[2] in LOSS_FIELDS and parts[1]:
        return parts
    if len(parts) == 2 and parts[0] == "train" and parts[1] in TRAIN_FIELDS:
        return parts
    raise ValueError(f"{key!r} is not a key stage 1 searches; searchable: losses.<term>.{{{','.join(LOSS_FIELDS)}}}, "
                     f"train.{{{','.join(TRAIN_FIELDS)}}}")


@dataclass(frozen=True)
class Grid:
    name: str
    description: str
    source: str
    trials: tuple[TrialSpec, ...]
    questions: dict | None = None  # parse_questions' output; None: not declared (the report uses defaults)
    tune: TuneSpec | None = None  # `tune:`: tuned arms (stage 1 search, stage 2 fresh seeds); None: a plain grid


def _flatten(prefix: str, value: Any, out: dict) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _flatten(f"{prefix}.{k}", v, out)
    elif isinstance(value, (list, tuple)):
        out[prefix] = str(list(value))
    else:
        out[prefix] = value
