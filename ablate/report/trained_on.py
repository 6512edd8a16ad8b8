"""Which metric is a training objective of which arm.

An arm trained to minimise a distance is judged unfairly by that distance: the LPIPS arm
on LPIPS, the foundation arm on the Frechet distance in the same foundation model. In a
comparison, a metric that either arm trained on is marked "trained on" and is neither
voted nor ranked (ablate.report.questions, ablate.report.ranking).

An arm's objectives are its loss terms with a weight > 0, as {term: options}, plus the
pseudo-term "edge_channel" when the model reconstructs an edge map as a 4th channel
(its L1 on that channel is an edge-filter distance the arm trains on). They come from a
results row (`terms_of_row`) or a TrialSpec (`terms_of_spec`), so the report and the
search-space check apply the same rules.
"""

from __future__ import annotations

import math

from ablate.report.metric_names import base_name


def _present(v) -> bool:
    return v is not None and not (isinstance(v, float) and math.isnan(v))


def terms_of_row(row: dict) -> dict[str, dict]:
    """{term: options} of one results row (config.loss.<term>.weight > 0), plus edge_channel."""
    out: dict[str, dict] = {}
    for k, v in row.items():
        if isinstance(k, str) and k.startswith("config.loss.") and k.endswith(".weight") and _present(v) and float(v) > 0:
            name = k[len("config.loss."):-len(".weight")]
            prefix = f"config.loss.{name}.options."
            out[name] = {o[len(prefix):]: ov for o, ov in row.items()
                         if isinstance(o, str) and o.startswith(prefix) and _present(ov)}
    channel = {k[len("config.model.edge_channel."):]: v for k, v in row.items()
               if isinstance(k, str) and k.startswith("config.model.edge_channel.") and _present(v)}
    if channel:
        out["edge_channel"] = channel
    return out


def terms_of_spec(spec) -> dict[str, dict]:
    """The same from an ablate.config.TrialSpec."""
    out = {ls.name: dict(ls.options) for ls in spec.losses if ls.weight > 0}
    if spec.model.edge_channel:
        out["edge_channel"] = dict(spec.model.edge_channel)
    return out


def trained_on(metric: str, terms: dict[str, dict]) -> str | None:
    """The training term behind `metric` in an arm with these terms, as a short phrase, or None.

    lpips*          <- the lpips term (any trunk: a random-VGG LPIPS arm still trains the
                       metric's architecture and layers, so it is not an independent judge)
    psnr(_whole)    <- the l2 term (PSNR = -10 log10 MSE, a monotone function of it)
    (ms_)ssim(_whole) <- the ssim / ms_ssim term
    fd_<m>, kid_<m> <- the foundation term with model <m> (or `auto`, not yet resolved)
    edge*           <- an edge loss term or an edge channel (edge-filter distances)
    """
    b = base_name(metric).removesuffix("_whole")  # psnr_whole: the same objective over the whole image
    if b.startswith("lpips") and "lpips" in terms:
        return "lpips term"
    if b == "psnr" and "l2" in terms:
        return "l2 term (PSNR is a function of the MSE)"
    if b in ("ssim", "ms_ssim") and b in terms:
        return f"{b} term"
    if b.startswith(("fd_", "kid_")) and "foundation" in terms:
        model = b.split("_", 1)[1]
        trained = terms["foundation"].get("model", "retfound")
        if trained in (model, "auto"):
            return f"foundation term in {trained} features"
    if b.startswith("edge"):
        for t in ("edge", "edge_channel"):
            if t in terms:
                return f"{t.replace('_', ' ')} ({terms[t].get('family', '?')})"
    return None


def trained_on_either(metric: str, a_terms: dict, b_terms: dict, a: str, b: str) -> str:
    """"" when neither arm trained on `metric`, else e.g. "`lpips` arm: lpips term"."""
    parts = [f"`{name}`: {why}" for name, terms in ((a, a_terms), (b, b_terms))
             if (why := trained_on(metric, terms))]
    return "; ".join(parts)
