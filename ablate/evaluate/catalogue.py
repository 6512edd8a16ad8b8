"""Every metric the evaluation writes, gathered from the modules that compute them (each
declares its `MetricInfo` beside its code), in the order the report lists them.

The report (directions, units, which numbers are per set) and the search-space loader
(which names a `questions:` key may declare) read metrics from here only.
"""

from __future__ import annotations

from ablate.evaluate import fidelity, fov_fidelity, kid, morphology, topology, vessel_border
from ablate.metric_info import MetricInfo

# per image first (FOV fidelity, whole-image fidelity, vessel agreement, vessel borders), then
# the per-feature deltas, then the per-set (distribution) metrics
CATALOGUE: tuple[MetricInfo, ...] = (
    *fov_fidelity.METRICS, *fidelity.PAIR_METRICS,
    morphology.DICE, morphology.CLDICE, morphology.BETTI0_ERROR, morphology.BETTI1_ERROR, *topology.METRICS,
    *vessel_border.METRICS, morphology.ABS_DELTA,
    fidelity.FID, kid.KID, fidelity.FD, kid.KID_MODEL,
)
_EXACT = {m.name: m for m in CATALOGUE if not m.family}
_FAMILIES = tuple(m for m in CATALOGUE if m.family)


def _member_ok(family: MetricInfo, rest: str) -> bool:
    """Whether `rest` (the part after the prefix) names a member: a vessel feature for
    abs_delta_, any model name for fd_ / kid_."""
    if family is morphology.ABS_DELTA:
        return rest in morphology.FEATURES
    return bool(rest)


def lookup(name: str) -> MetricInfo | None:
    """The MetricInfo of a metric name without `test/` and without `@n`; None for a name the
    evaluation does not write."""
    if name in _EXACT:
        return _EXACT[name]
    for family in _FAMILIES:
        if name.startswith(family.name) and _member_ok(family, name[len(family.name):]):
            return family
    return None


def vocabulary() -> list[str]:
    """The names a user may write, for messages: families spelled out (abs_delta_<feature>
    for each feature, fd_<model>)."""
    out: list[str] = []
    for m in CATALOGUE:
        if m is morphology.ABS_DELTA:
            out += [f"{m.name}{f}" for f in morphology.FEATURES]
        elif m.family:
            out.append(f"{m.name}<model>")
        else:
            out.append(m.name)
    return out
