"""Collect a finished q2-drive experiment into the study folder (run.sh's last step).

    python studies/q2-drive/collect.py EXP STUDY_DIR [--unet FILE] [--data DIR]

Writes, into STUDY_DIR:
  report.md            the experiment's report (ablate report), its paths made relative
  results.csv          one row per trial: status, steps, wall time, every test metric
  plateau.csv          per trial: is val/loss/l1 flat over the last 20 % of steps (ablate.report.convergence)
  controls.csv         the declared control contrasts (CONTROL_PAIRS): the paper's arm against each control,
                       Welch with Hsu's df and Holm over their tests, as the report does against the baseline
  controls-<dataset>.csv  the same contrasts on each other dataset the trials were evaluated on
                       (`ablate evaluate EXP --data OTHER`, e.g. STARE by stare.sh), from its per-image table
  study.json           the numbers the README quotes: wall times, the judge's Dice, plateau counts, verdicts
  figures/curves.png   the validation curves, one panel per arm, the plateau window shaded
  figures/intervals.png  each arm minus the baseline, mean and 95 % t interval over seeds
  figures/image_grid.png  three test images: original, reconstructions, lost (red) / spurious (green) vessels
Every figure is drawn from the experiment's own files and evaluation functions; the images are
DRIVE's at 128 px (small downscaled crops, as DRIVE's terms allow in a publication figure).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import pandas as pd

from ablate.report.convergence import DEFAULT_TAG, TAIL, TOLERANCE, plateau_table, read_curves

# What the interval figure shows: the declared primaries first, then the secondaries a reader of
# the paper asks about (border contrast, vessel density and width changes, Dice, whole-image fidelity).
SHOWN = ["border_width_error", "cldice", "border_contrast_error", "dice", "abs_delta_density",
         "abs_delta_vessel_width", "psnr", "ssim"]
N_GRID_IMAGES = 3

# Declared before the grid ran (issue 27): the report compares every arm with `base`; what the
# controls are for is the paper's arm against each of them, on the Q2 primaries, Holm over these
# 4 tests (a family of its own, apart from the report's Q2 family). Read: does the Meijering
# channel beat a 4th channel with no vessel prior, and does it beat the map as a target only?
CONTROL_PAIRS = (("meijering_channel", "gaussian_channel"), ("meijering_channel", "meijering_target"))


def per_trial(trials: pd.DataFrame) -> pd.DataFrame:
    keep = ["trial", "combination", "seed", "status", "steps", "wall_time_s", "segmenter", "val/loss/l1", "val/psnr"]
    tests = sorted(c for c in trials.columns if c.startswith("test/") and not c.startswith(("test/orig.", "test/recon.")))
    cols = [c for c in keep if c in trials.columns] + tests
    return trials[cols].sort_values(["combination", "seed"], key=lambda s: s if s.name == "seed" else s.astype(str))


def curves_figure(curves: dict[str, pd.DataFrame], trials: pd.DataFrame, plateau: pd.DataFrame,
                  combinations: list[str], n_val: int | None, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    comb_of = dict(zip(trials["trial"], trials["combination"]))
    flat_of = dict(zip(plateau["run"], plateau["flat"]))
    fig, axes = plt.subplots(1, len(combinations), figsize=(4.2 * len(combinations), 3.2), sharey=True, squeeze=False)
    for ax, comb in zip(axes[0], combinations):
        for run, df in curves.items():
            if comb_of.get(run) != comb:
                continue
            seed = re.search(r"-s(\d+)-", run)
            style = "-" if flat_of.get(run) else ":"
            ax.plot(df["step"], df["value"], style, lw=1.2, label=f"seed {seed.group(1) if seed else '?'}"
                    + ("" if flat_of.get(run) else " (not flat)"))
            last = df["step"].max()
            ax.axvspan(last * (1 - TAIL), last, color="0.92", zorder=0)
        ax.set_title(comb, fontsize=10)
        ax.set_xlabel("step")
        ax.legend(fontsize=7)
    axes[0][0].set_ylabel(f"{DEFAULT_TAG} ({n_val if n_val is not None else '?'} val images)")
    fig.suptitle(f"validation L1; shaded: the last {TAIL:.0%} of steps, flat if the fitted change there is within "
                 f"±{TOLERANCE:.0%} of its mean", fontsize=9)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def intervals_figure(q: pd.DataFrame, out: Path) -> list[str]:
    """Forest plot of (arm - baseline) per metric with its 95 % t interval over seeds; returns the metrics drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    q = q[q["question"] == "Q2"]
    primary = list(dict.fromkeys(q[q["role"] == "primary"]["metric"]))
    metrics = primary + [m for m in SHOWN if m in set(q["metric"]) and m not in primary]
    arms = list(dict.fromkeys(q["combination"]))
    ncol = min(4, len(metrics))
    nrow = -(-len(metrics) // ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.0 * ncol, (0.45 * len(arms) + 1.3) * nrow), squeeze=False)
    for ax in axes.flat[len(metrics):]:
        ax.set_visible(False)
    for k, (ax, m) in enumerate(zip(axes.flat, metrics)):
        rows = q[q["metric"] == m].set_index("combination")
        for i, arm in enumerate(arms):
            if arm not in rows.index:
                continue
            r = rows.loc[arm]
            colour = "tab:green" if r["effect"] == "better" and r["significant"] else \
                "tab:red" if r["effect"] == "worse" and r["significant"] else "0.3"
            ax.errorbar(r["diff"], i, xerr=[[r["diff"] - r["ci_low"]], [r["ci_high"] - r["diff"]]], fmt="o",
                        color=colour, capsize=3)
        ax.axvline(0, color="tab:orange", lw=1)
        primary = (q[q["metric"] == m]["role"] == "primary").any()
        better = q[q["metric"] == m]["direction"].iloc[0]
        ax.set_title(f"{m}{' (primary)' if primary else ''}\n{better} is better", fontsize=8,
                     fontweight="bold" if primary else "normal")
        ax.set_yticks(range(len(arms)), arms if k % ncol == 0 else [""] * len(arms), fontsize=8)
        ax.set_ylim(-0.6, len(arms) - 0.4)
        ax.tick_params(axis="x", labelsize=7)
    fig.suptitle("each arm minus the baseline: mean over seeds and 95 % Welch t interval (in the metric's units); "
                 "green / red: significant after Holm (primaries only)", fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return metrics


def image_grid_figure(e, out: Path) -> list[str]:
    """Originals, each arm's reconstruction (its lowest finished seed) and the vessel difference map."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ablate.evaluate.samples import build_image_grid, segmenter_used
    from ablate.report.render import diff_map

    grid, warnings = build_image_grid(e.exp, e.data, e.trials, e.combinations, e.baseline,
                                      segmenter_used(e.notes, e.segmenter), N_GRID_IMAGES)
    if grid is None:
        raise SystemExit("image grid not drawn: " + "; ".join(warnings))
    cols = 2 + 2 * len(grid.columns)
    fig, axes = plt.subplots(len(grid.ids), cols, figsize=(1.6 * cols, 1.7 * len(grid.ids)), squeeze=False)
    for r, _ in enumerate(grid.ids):
        cells = [(grid.originals[r], "original"), (grid.maps[r], f"vessels ({grid.segmenter})")]
        for c in grid.columns:
            ref = c.ref_maps[r] if c.ref_maps is not None else grid.maps[r]
            cells += [(c.recon[r], f"{c.combination} s{c.seed}"), (diff_map(ref, c.maps[r]), "lost / spurious")]
        for ax, (img, title) in zip(axes[r], cells):
            ax.imshow(img, cmap="gray" if img.ndim == 2 else None, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(title, fontsize=7)
        axes[r][0].set_ylabel(grid.ids[r], fontsize=7)
    fig.suptitle("DRIVE test images at 128 px; difference maps: white both, red lost (original only), "
                 "green spurious (reconstruction only)", fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return grid.ids


def control_contrasts(trials: pd.DataFrame, primaries: list[str]) -> tuple[pd.DataFrame, dict[str, str]]:
    """CONTROL_PAIRS on the Q2 primaries with the report's own inference (ablate.report.inference.welch:
    Hsu's df; verdicts.judge: Holm over the family; verdicts.pair_verdict: yes / no / mixed / not
    enough evidence / not enough seeds). Trial values are the finished trials' test means."""
    from ablate.evaluate.catalogue import lookup
    from ablate.report.inference import welch
    from ablate.report.verdicts import judge, pair_verdict

    done = trials[trials["status"] == "done"]
    records = []
    for arm, control in CONTROL_PAIRS:
        for m in primaries:
            info = lookup(m)
            if info is None or info.better is None:
                raise SystemExit(f"control contrasts: {m} has no better direction in the metric catalogue")
            col = f"test/{m}"
            a = done.loc[done["combination"] == arm, col].to_numpy(dtype=float)
            b = done.loc[done["combination"] == control, col].to_numpy(dtype=float)
            r = welch(a, b)
            records.append(dict(r, combination=arm, reference=control, metric=m, role="primary", excluded="",
                                direction=info.better.value))
    judged = judge(records)
    verdicts = {f"{arm} vs {control}": pair_verdict([r for r in judged if (r["combination"], r["reference"])
                                                     == (arm, control)]) for arm, control in CONTROL_PAIRS}
    cols = ["combination", "reference", "metric", "direction", "n_seeds", "n_seeds_reference", "mean",
            "reference_mean", "diff", "ci_low", "ci_high", "df", "p", "p_holm", "effect", "significant", "verdict"]
    return pd.DataFrame(judged)[cols], verdicts


def other_dataset_trials(folder: Path, trials: pd.DataFrame) -> pd.DataFrame:
    """The finished trials as another dataset scored them: per trial, the mean over that dataset's
    images of each per-image metric as a test/<metric> column (the shape control_contrasts reads)."""
    pi = pd.read_parquet(folder / "per_image.parquet")
    metrics = [c for c in pi.columns if pd.api.types.is_numeric_dtype(pi[c]) and c not in ("seed",)]
    means = pi.groupby("trial")[metrics].mean().add_prefix("test/")  # NaN images skipped, as evaluate's means
    done = trials.loc[trials["status"] == "done", ["trial", "combination", "seed", "status"]]
    return done.join(means, on="trial", how="inner")


def _val_images(data: Path | None) -> int | None:
    """The validation photographs every check reads (the prepared dataset's manifest), or None."""
    if data is None:
        return None
    from ablate.data.shards import read_manifest

    return int(read_manifest(data)["counts"]["val"])


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("exp", type=Path)
    ap.add_argument("study", type=Path)
    ap.add_argument("--unet", type=Path, default=None, help="the U-Net file (its training record is quoted)")
    ap.add_argument("--data", type=Path, default=None)
    args = ap.parse_args(argv)

    from ablate.report.collect import load_experiment

    exp = args.exp.resolve()
    if not (exp / "report" / "report.md").is_file():
        sys.exit(f"{exp}/report/report.md not found: the grid has not been evaluated and reported "
                 f"(ablate evaluate {exp} && ablate report {exp})")
    e = load_experiment(exp)
    study = args.study
    (study / "figures").mkdir(parents=True, exist_ok=True)

    text = (exp / "report" / "report.md").read_text()
    text = text.replace(str(exp), "runs/q2-drive/exp")
    if args.data is not None:
        text = text.replace(str(args.data.resolve()), "runs/q2-drive/drive128")
        text = text.replace(str(args.data.resolve().parent), "runs/q2-drive")  # other datasets prepared beside it
    text = re.sub(r"/[^ `'\"]*/\.cache/ablate/", "$ABLATE_CACHE/", text)
    (study / "report.md").write_text(text)

    table = per_trial(e.trials)
    table.to_csv(study / "results.csv", index=False, float_format="%.6g")

    curves = read_curves(exp / "tensorboard", DEFAULT_TAG)
    plateau = plateau_table(curves)
    comb_of = dict(zip(e.trials["trial"], e.trials["combination"]))
    plateau.insert(1, "combination", plateau["run"].map(comb_of))
    plateau.to_csv(study / "plateau.csv", index=False, float_format="%.6g")
    n_val = _val_images(args.data)
    curves_figure(curves, e.trials, plateau, e.combinations, n_val, study / "figures" / "curves.png")

    q = pd.read_parquet(exp / "report" / "questions.parquet")
    shown = intervals_figure(q, study / "figures" / "intervals.png")
    ids = image_grid_figure(e, study / "figures" / "image_grid.png")

    q2_primary = list(dict.fromkeys(q[(q["question"] == "Q2") & (q["role"] == "primary")]["metric"]))
    controls, control_verdicts = control_contrasts(e.trials, q2_primary)
    controls.to_csv(study / "controls.csv", index=False, float_format="%.6g")

    on_other = {}  # each other dataset: its Q2 verdict line (the report's) and the control contrasts there
    for folder in sorted((exp / "eval" / "datasets").glob("*/")):
        if not (folder / "per_image.parquet").is_file():
            continue
        other, other_verdicts = control_contrasts(other_dataset_trials(folder, e.trials), q2_primary)
        other.to_csv(study / f"controls-{folder.name}.csv", index=False, float_format="%.6g")
        section = text.split(f"## Other dataset: {folder.name}", 1)[-1]
        line = re.search(r"^\*\*[^\n]*\*\* — Q2[^\n]*$", section, re.MULTILINE)
        on_other[folder.name] = {"q2_verdict": line.group(0) if line else None, "control_verdicts": other_verdicts,
                                 "images": int(pd.read_parquet(folder / "per_image.parquet")["image_id"].nunique())}

    verdict = re.search(r"^\*\*[^\n]*\*\* — Q2[^\n]*$", text, re.MULTILINE)
    # the non-inferiority section's lines (the lead and one line per arm), as the report wrote them
    section = re.search(r"^### Non-inferiority against the baseline\n(.*?)(?=^#)", text, re.MULTILINE | re.DOTALL)
    non_inferiority = [ln.strip() for ln in section.group(1).splitlines() if ln.strip()] if section else None
    done = e.trials[e.trials["status"] == "done"]
    summary = {
        "trials": len(e.trials), "done": len(done),
        "train_wall_s_per_trial": {c: float(g["wall_time_s"].mean()) for c, g in done.groupby("combination")},
        "plateau": {"flat": int((plateau["flat"] == True).sum()), "not_flat": int((plateau["flat"] == False).sum()),
                    "undecided": int(plateau["flat"].isna().sum()), "tag": DEFAULT_TAG, "tail": TAIL,
                    "tolerance": TOLERANCE,
                    # descriptive: the 95 % interval of the fitted tail change spans 0 (no trend detectable)
                    "no_trend_detectable": int(((plateau["change_ci_low"] <= 0) & (plateau["change_ci_high"] >= 0)).sum()),
                    "falling_detectably": int((plateau["change_ci_high"] < 0).sum()),
                    "rising_detectably": int((plateau["change_ci_low"] > 0).sum())},
        "segmenter": e.segmenter,
        "q2_verdict": verdict.group(0) if verdict else None,
        "non_inferiority": non_inferiority, "val_images": n_val,
        "control_verdicts": control_verdicts,
        "interval_metrics": shown, "grid_images": ids, "other_datasets": on_other,
    }
    if args.unet and args.unet.is_file():
        from ablate.segmenter.unet_file import load_segmenter

        meta = load_segmenter(args.unet).meta
        summary["segmenter_record"] = {k: meta.get(k) for k in ("size", "trained_on", "metrics", "training",
                                                                "threshold", "threshold_rule")}
    (study / "study.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    print(f"{study}: report.md, results.csv ({len(table)} trials), plateau.csv "
          f"({summary['plateau']['flat']} flat, {summary['plateau']['not_flat']} not), study.json, figures/")


if __name__ == "__main__":
    main()
