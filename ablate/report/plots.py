"""The report's figures: one per metric group, mean +- 95% CI per combination with the
seeds as dots, as PNG data URIs (the HTML report embeds them)."""

from __future__ import annotations

import base64
import io
import math

import numpy as np

from ablate.report.collect import Experiment
from ablate.report.stats import Analysis, arrow, metric_group, metric_sort_key
from ablate.ui.progress import tracked


def _fig_uri(fig) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def metric_plots(e: Experiment, a: Analysis) -> list[tuple[str, str]]:
    """(group title, PNG data URI): one figure per metric group, one panel per metric:
    mean +- 95% CI per combination, the seeds as dots, the baseline in orange."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = a.summary
    out = []
    groups: dict[str, list[str]] = {}
    for m in sorted(s["metric"].unique(), key=metric_sort_key):
        groups.setdefault(metric_group(m), []).append(m)
    combos = e.combinations
    xs = {c: i for i, c in enumerate(combos)}
    for group, metrics in tracked(groups.items(), "report", "figures"):
        ncol = min(4, len(metrics))
        nrow = math.ceil(len(metrics) / ncol)
        w = max(3.2, 0.55 * len(combos) + 1.6)
        fig, axes = plt.subplots(nrow, ncol, figsize=(w * ncol, 3.1 * nrow), squeeze=False)
        for ax, m in zip(axes.flat, metrics):
            g = s[s["metric"] == m].set_index("combination")
            pts = e.trial_metrics[e.trial_metrics["metric"] == m]
            for c in combos:
                if c not in g.index:
                    continue
                r = g.loc[c]
                colour = "tab:orange" if c == e.baseline else "tab:blue"
                seeds = pts[pts["combination"] == c]["value"]
                ax.scatter(np.full(len(seeds), xs[c]) + 0.12, seeds, s=9, color="0.55", zorder=2)
                if np.isfinite(r["ci_low"]):
                    ax.errorbar(xs[c], r["mean"], yerr=[[r["mean"] - r["ci_low"]], [r["ci_high"] - r["mean"]]],
                                fmt="o", color=colour, capsize=4, zorder=3)
                else:
                    ax.plot(xs[c], r["mean"], "o", color=colour, zorder=3, markerfacecolor="white")
            if e.baseline in g.index and np.isfinite(g.loc[e.baseline, "mean"]):
                ax.axhline(g.loc[e.baseline, "mean"], color="tab:orange", lw=0.8, ls="--", zorder=1)
            ax.set_xticks(range(len(combos)))
            ax.set_xticklabels(combos, rotation=30, ha="right", fontsize=8)
            ax.set_xlim(-0.6, len(combos) - 0.4)
            ax.set_title(f"{m}\n({arrow(m)})", fontsize=9)
            ax.tick_params(axis="y", labelsize=8)
            ax.grid(axis="y", alpha=0.3)
        for ax in list(axes.flat)[len(metrics):]:
            ax.axis("off")
        fig.suptitle(f"mean ± 95% CI over seeds (open marker: n=1, no CI; grey dots: seeds; "
                     f"orange: baseline {e.baseline})", fontsize=10)
        fig.tight_layout()
        out.append((group, _fig_uri(fig)))
    return out
