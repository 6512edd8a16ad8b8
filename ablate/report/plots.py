"""The report's figures, as PNG data URIs (the HTML report embeds them): one per metric group,
mean +- 95% CI per combination with the seeds as dots; and a tuned grid's search curves."""

from __future__ import annotations

import base64
import io
import math

import numpy as np

from ablate.report.collect import Experiment
from ablate.report.stats import Analysis, arrow, metric_group, metric_sort_key
from ablate.report.tuning import TuningSection
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


# Stage 1's markers (ablate.report.tuning): a finished trial filled, a pruned one hollow at its
# last value, an errored or incomplete one as a cross at its last value (where it reported one).
DONE_STYLE = {"marker": "o", "color": "tab:blue", "label": "finished"}
PRUNED_STYLE = {"marker": "o", "facecolors": "none", "edgecolors": "tab:red", "label": "pruned (last value)"}
FAILED_STYLE = {"marker": "x", "color": "0.35", "label": "errored / incomplete (last value)"}


def search_curves(t: TuningSection):
    """The search curves of a tuned grid's stage 1 as one matplotlib Figure, a panel per searched
    combination: objective against trial order, the median of the finished trials dashed, the
    as-written default (order 0) and the chosen trial labelled.

    Args:
        t: the Tuning section (ablate.report.tuning.load_tuning).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    combos = t.combinations
    ncol = min(3, len(combos))
    nrow = math.ceil(len(combos) / ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(4.6 * ncol, 3.3 * nrow), squeeze=False)
    better = "higher" if t.mode == "max" else "lower"
    for ax, c in zip(axes.flat, combos):
        rows = c.trials[np.isfinite(c.trials["objective"].astype(float))]
        for status, style in (("done", DONE_STYLE), ("pruned", PRUNED_STYLE)):
            r = rows[rows["status"] == status]
            ax.scatter(r["order"], r["objective"], s=28, zorder=3, **style)
        failed = rows[rows["status"].isin(["error", "incomplete"])]
        if len(failed):
            ax.scatter(failed["order"], failed["objective"], s=28, zorder=3, **FAILED_STYLE)
        if np.isfinite(c.median):
            ax.axhline(c.median, color="0.5", lw=0.8, ls="--", zorder=1, label="median of finished")
        for trial, text, colour in ((c.default["trial"] if c.default else None, "as written", "tab:orange"),
                                    (c.chosen_trial, "chosen", "tab:green")):
            at = rows[rows["trial"] == trial]
            if trial is None or not len(at):
                continue
            x, y = float(at["order"].iloc[0]), float(at["objective"].iloc[0])
            ax.scatter([x], [y], s=130, marker="*" if text == "chosen" else "D", facecolors="none",
                       edgecolors=colour, linewidths=1.4, zorder=4)
            ax.annotate(text, (x, y), xytext=(6, 8 if text == "chosen" else -12), textcoords="offset points",
                        fontsize=8, color=colour)
        ax.set_title(c.combination + ("" if c.finished else f" (search not finished, {len(c.trials)} of "
                                                           f"{c.budget} trials)"), fontsize=9)
        ax.set_xlim(-0.6, c.budget - 0.4)  # the whole budget: an unfinished search shows what is left
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.margins(y=0.15)  # room for the labels of the as-written and chosen points
        ax.set_xlabel("trial order (0 = as written)", fontsize=8)
        ax.set_ylabel(f"{t.objective} ({better} is better)", fontsize=8)
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(combos):]:
        ax.axis("off")
    legend: dict = {}  # one legend under the panels, so none covers a point; each marker once
    for ax in axes.flat:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            legend.setdefault(label, handle)
    fig.suptitle(f"stage 1: {t.objective} of each searched point on the val split (search seed {t.search_seed})",
                 fontsize=10)
    fig.tight_layout(rect=(0, 0.07 / nrow, 1, 1))
    fig.legend(list(legend.values()), list(legend.keys()), loc="lower center", ncol=len(legend), fontsize=8,
               frameon=False)
    return fig


def search_plot(t: TuningSection) -> str:
    """search_curves as a PNG data URI (index.html embeds it)."""
    return _fig_uri(search_curves(t))
