"""The report's Tuning section (issue 29): a tuned grid's stage 1 (search/trials.parquet,
search/chosen.json, grid.json's `tune`) of a hand-made experiment (no training, no Ray),
with medians and margins computed by hand, rendered into index.html and report.md."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ablate.report.build import build_report
from ablate.report.collect import ReportError, load_experiment
from ablate.report.plots import PRUNED_STYLE, search_curves
from ablate.report.tuning import finished_median, load_tuning, margin
from ablate.report.tuning_view import tuning_view
from tests.helpers.experiments import LPIPS, make_exp

SEEDS = (0, 1, 2)
SEARCH_SEED = 99
BUDGET = 8
EDGE_KEYS = {"losses.edge.weight": {"loguniform": [0.01, 10.0]}, "train.lr": {"loguniform": [1e-4, 1e-2]}}
LPIPS_KEYS = {"losses.lpips.weight": {"uniform": [0.1, 2.0]}}
# edge's search: (status, objective, steps, edge weight, lr); order 0 the as-written point.
# Finished: 20, 22, 21, 25 -> median 21.5; the chosen 25 is 3.5 dB over it. The pruned 10 and 12
# would pull the median to 20.5 if they counted.
EDGE_ROWS = [("done", 20.0, 10, 1.0, 1e-3), ("done", 22.0, 10, 0.5, 2e-3), ("pruned", 10.0, 2, 5.0, 1e-4),
             ("done", 21.0, 10, 0.2, 5e-4), ("pruned", 12.0, 4, 8.0, 3e-4), ("error", math.nan, 1, 0.03, 1e-2),
             ("done", 25.0, 10, 0.37, 2e-3)]
# lpips's search: the as-written point pruned at step 3; finished 18, 19, 23 -> median 19, best 23 (+4)
LPIPS_ROWS = [("pruned", 12.5, 3, 0.5), ("done", 18.0, 10, 1.5), ("done", 23.0, 10, 0.9), ("done", 19.0, 10, 0.2)]


def tune_record(space: dict, mode: str = "max", objective: str = "val/psnr") -> dict:
    return {"objective": objective, "mode": mode, "budget": BUDGET, "algorithm": "optuna", "scheduler": "asha",
            "search_seed": SEARCH_SEED, "grace_steps": 2, "space": space}


def search_rows(combination: str, rows: list[tuple], keys: list[str]) -> list[dict]:
    out = []
    for order, (status, objective, steps, *values) in enumerate(rows):
        out.append({"combination": combination, "trial": f"{combination}-search-{order:05d}",
                    "trial_id": f"{order:05d}", "order": order, "default": order == 0, "status": status,
                    "steps": steps, "objective": objective, **{f"param.{k}": v for k, v in zip(keys, values)},
                    "wall_time_s": 1.0, "startup_s": 0.1})
    return out


def add_search(exp: Path, tune: dict, rows: list[dict], chosen: dict) -> None:
    """grid.json's `tune`, search/trials.parquet and search/chosen.json, as stage 1 writes them."""
    grid = json.loads((exp / "grid.json").read_text())
    grid["tune"] = tune
    (exp / "grid.json").write_text(json.dumps(grid))
    (exp / "search").mkdir(exist_ok=True)
    pd.DataFrame(rows).to_parquet(exp / "search" / "trials.parquet", index=False)
    (exp / "search" / "chosen.json").write_text(json.dumps({"tune": tune, "chosen": chosen}))


def tuned_experiment(root: Path, unfinished: bool = False) -> Path:
    """base (not searched), edge (searched, ended), lpips (searched, ended unless `unfinished`)."""
    exp = make_exp(root, {"base": {}, "edge": {"config.loss.edge.weight": 0.37}, "lpips": LPIPS}, seeds=SEEDS)
    rows = (search_rows("edge", EDGE_ROWS, list(EDGE_KEYS))
            + search_rows("lpips", LPIPS_ROWS, list(LPIPS_KEYS)))
    chosen = {"edge": {"point": {"losses.edge.weight": 0.37, "train.lr": 0.002}, "trial": "edge-search-00006",
                       "objective": 25.0, "steps": 10}}
    if not unfinished:
        chosen["lpips"] = {"point": {"losses.lpips.weight": 0.9}, "trial": "lpips-search-00002", "objective": 23.0,
                           "steps": 10}
    add_search(exp, tune_record({"edge": EDGE_KEYS, "lpips": LPIPS_KEYS}), rows, chosen)
    return exp


def test_median_and_margin_by_hand_in_both_modes():
    t = pd.DataFrame({"status": ["done", "pruned", "done", "done", "error", "pruned"],
                      "objective": [0.30, 0.01, 0.20, 0.25, math.nan, 0.05]})
    assert finished_median(t) == 0.25  # 0.20, 0.25, 0.30: the pruned 0.01 and 0.05 do not count
    assert margin(0.20, 0.25, "min") == pytest.approx(0.05)  # lower is better: 0.05 better than the median
    assert margin(0.30, 0.25, "min") == pytest.approx(-0.05)
    assert margin(25.0, 21.5, "max") == 3.5 and margin(20.0, 21.5, "max") == -1.5
    assert math.isnan(finished_median(t[t["status"] != "done"]))


def test_section_numbers_from_the_files(tmp_path):
    e = load_experiment(tuned_experiment(tmp_path / "e"))
    t = load_tuning(e)
    assert t is not None and t.seeds == list(SEEDS) and t.disjoint and t.not_searched == ["base"]
    edge, lpips = t.combinations
    assert (edge.combination, lpips.combination) == ("edge", "lpips")
    assert edge.median == 21.5 and edge.best == 25.0 and edge.margin == 3.5  # not 20.5: pruned left out
    assert (edge.count("done"), edge.count("pruned"), edge.count("error"), len(edge.trials)) == (4, 2, 1, 7)
    assert lpips.median == 19.0 and lpips.margin == 4.0
    keys = {k.key: k for k in edge.keys}
    assert keys["losses.edge.weight"].default == 1.0 and keys["losses.edge.weight"].chosen == 0.37
    assert keys["train.lr"].default == 1e-3 and keys["train.lr"].chosen == 0.002
    assert keys["train.lr"].distribution == "loguniform[0.0001, 0.01]"
    assert t.warnings == []


def test_minimised_objective_margin_is_positive_when_the_best_is_lower(tmp_path):
    exp = make_exp(tmp_path / "e", {"lpips": LPIPS}, seeds=SEEDS)
    rows = search_rows("lpips", [("done", 0.30, 10, 0.5), ("done", 0.20, 10, 1.0), ("pruned", 0.01, 2, 2.0),
                                 ("done", 0.25, 10, 1.5)], list(LPIPS_KEYS))
    add_search(exp, tune_record({"lpips": LPIPS_KEYS}, mode="min", objective="val/lpips"), rows,
               {"lpips": {"point": {"losses.lpips.weight": 1.0}, "trial": "lpips-search-00001", "objective": 0.20,
                          "steps": 10}})
    t = load_tuning(load_experiment(exp))
    assert t is not None
    c = t.combinations[0]
    assert c.median == 0.25 and c.margin == pytest.approx(0.05)
    view = tuning_view(t, "")
    row = dict(zip(view.outcomes.columns, view.outcomes.rows[0]))
    assert row["best − median"] == "+0.05" and row["as written (order 0)"] == "0.3"
    assert "lower is better" in view.lead


def test_pruned_default_and_unfinished_search_are_said(tmp_path):
    e = load_experiment(tuned_experiment(tmp_path / "e", unfinished=True))
    t = load_tuning(e)
    assert t is not None
    view = tuning_view(t, "")
    outcomes = {r[0]: dict(zip(view.outcomes.columns, r)) for r in view.outcomes.rows}
    assert outcomes["lpips"]["as written (order 0)"] == "12.5 (pruned at step 3)"
    assert outcomes["lpips"]["search"] == f"search not finished (4 of {BUDGET} trials)"
    assert outcomes["lpips"]["best val/psnr"] == "—"
    assert outcomes["edge"]["search"] == "ended" and outcomes["edge"]["best − median"] == "+3.5 dB"
    assert outcomes["edge"]["best val/psnr"] == "25 (edge-search-00006, step 10)"
    points = {(r[0], r[1]): dict(zip(view.points.columns, r)) for r in view.points.rows}
    assert points[("lpips", "losses.lpips.weight")]["chosen"] == f"search not finished (4 of {BUDGET} trials)"
    assert points[("lpips", "losses.lpips.weight")]["as written"] == "0.5"
    assert t.warnings == [f"TUNING: the search of `lpips` has not finished (4 of {BUDGET} trials)."]


def test_the_figure_draws_pruned_trials_hollow_and_labels_default_and_chosen(tmp_path):
    t = load_tuning(load_experiment(tuned_experiment(tmp_path / "e")))
    assert t is not None
    fig = search_curves(t)
    for ax, c in zip(fig.axes, t.combinations):
        by_label = {coll.get_label(): coll for coll in ax.collections}
        pruned = by_label[PRUNED_STYLE["label"]]
        expected = c.trials[c.trials["status"] == "pruned"]
        assert len(pruned.get_offsets()) == len(expected) == c.count("pruned")
        assert np.allclose(pruned.get_offsets(), expected[["order", "objective"]].to_numpy(float))
        assert len(pruned.get_facecolors()) == 0  # hollow
        assert len(by_label["finished"].get_offsets()) == c.count("done")
        notes = {a.get_text(): a.xy for a in ax.texts}
        chosen = c.trials.set_index("trial").loc[c.chosen_trial]
        assert notes["as written"] == (0.0, c.default["objective"])
        assert notes["chosen"] == (chosen["order"], chosen["objective"])
        assert ax.get_ylabel() == "val/psnr (higher is better)"
    import matplotlib.pyplot as plt

    plt.close(fig)


def test_section_in_both_documents_before_the_questions(tmp_path):
    exp = tuned_experiment(tmp_path / "e")
    html_path = build_report(exp, n_images=0, hparams=False)
    html, md = html_path.read_text(), html_path.with_name("report.md").read_text()
    for doc, question in ((html, '<h2 id="answers">'), (md, "## The paper's two questions")):
        assert doc.index("Tuning: stage 1's search") < doc.index(question)
        assert "The verdicts below are computed on stage-2 trials only" in doc
        assert "fresh seeds (0, 1, 2, as in results.parquet; disjoint from the search seed)" in doc
        assert f"at the search seed {SEARCH_SEED}, reading the train and val splits only" in doc
        assert "12.5 (pruned at step 3)" in doc and "+3.5 dB" in doc and "+4 dB" in doc
        assert "Not searched (stage 2 trains them as written): base." in doc
    section = html[html.index('<section id="tuning">'):html.index("</section>")]
    assert '<img class="plot" alt="search curves" src="data:image/png;base64,' in section
    # the chosen values beside the as-written ones, in both documents
    assert re.search(r"<td class=\"l\">losses\.edge\.weight</td>.*?<td>1</td><td class=\"l\">0\.37</td>", section)
    assert "| edge | losses.edge.weight | loguniform[0.01, 10.0] | 1 | 0.37 |" in md
    assert "| edge | train.lr | loguniform[0.0001, 0.01] | 0.001 | 0.002 |" in md
    assert "The search curves are in index.html." in md


def _without_time(text: str) -> str:
    return re.sub(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", "TIME", text)


def test_an_untuned_grid_has_no_section_and_the_section_changes_nothing_else(tmp_path):
    exp = make_exp(tmp_path / "e", {"base": {}, "edge": {"config.loss.edge.weight": 0.37}, "lpips": LPIPS},
                   seeds=SEEDS)
    html_path = build_report(exp, n_images=0, hparams=False)
    before = {p: _without_time(html_path.with_name(p).read_text()) for p in ("index.html", "report.md")}
    for doc in before.values():
        assert "Tuning" not in doc and "stage 1" not in doc and "stage-2" not in doc
    # search files without grid.json's `tune`: still an untuned grid
    tuned = tuned_experiment(tmp_path / "t")
    for name in ("trials.parquet", "chosen.json"):
        (exp / "search").mkdir(exist_ok=True)
        (exp / "search" / name).write_bytes((tuned / "search" / name).read_bytes())
    build_report(exp, n_images=0, hparams=False)
    assert {p: _without_time(html_path.with_name(p).read_text()) for p in before} == before
    # with `tune`, the section is added and the rest stays as it was
    grid = json.loads((exp / "grid.json").read_text())
    grid["tune"] = json.loads((tuned / "grid.json").read_text())["tune"]
    (exp / "grid.json").write_text(json.dumps(grid))
    build_report(exp, n_images=0, hparams=False)
    html = _without_time(html_path.read_text())
    md = _without_time(html_path.with_name("report.md").read_text())
    assert '<section id="tuning">' in html
    html = re.sub(r'<section id="tuning">.*?</section>\n', "", html, flags=re.DOTALL)
    md = re.sub(r"## Tuning: stage 1's search\n.*?(?=## The paper's two questions)", "", md, flags=re.DOTALL)
    assert html == before["index.html"] and md == before["report.md"]


def test_a_search_seed_among_stage_twos_seeds_is_said(tmp_path):
    exp = tuned_experiment(tmp_path / "e")
    for name in ("grid.json", "search/chosen.json"):
        record = json.loads((exp / name).read_text())
        record["tune"]["search_seed"] = 1
        (exp / name).write_text(json.dumps(record))
    t = load_tuning(load_experiment(exp))
    assert t is not None and not t.disjoint
    assert t.warnings == [("TUNING: the search seed 1 is also one of stage 2's seeds (0, 1, 2): that trial's point "
                          "was chosen on its own initialisation.")]
    assert "NOT disjoint from the search seed" in tuning_view(t, "").lead


def test_without_the_trials_table_the_section_says_so(tmp_path):
    exp = tuned_experiment(tmp_path / "e")
    (exp / "search" / "trials.parquet").unlink()
    t = load_tuning(load_experiment(exp))
    assert t is not None and t.notes == [(f"{exp}/search/trials.parquet: not found, so no search curves, trial counts "
                                         "or medians")]
    view = tuning_view(t, "")
    assert dict(zip(view.outcomes.columns, view.outcomes.rows[0]))["as written (order 0)"] == "— (not run)"
    md = build_report(exp, n_images=0, hparams=False).with_name("report.md").read_text()
    assert "trials.parquet: not found" in md and "search curves are in index.html" not in md


def _rewrite_chosen(exp: Path, change) -> None:
    record = json.loads((exp / "search" / "chosen.json").read_text())
    change(record)
    (exp / "search" / "chosen.json").write_text(json.dumps(record))


@pytest.mark.bad_input
@pytest.mark.parametrize("change, match", [
    (lambda r: r["chosen"]["edge"].update(objective="high"),
     r"search/chosen\.json: chosen\.edge\.objective is a string, expected a number"),
    (lambda r: r["chosen"]["edge"]["point"].pop("train.lr"), r"search/chosen\.json: chosen\.edge\.point\.train\.lr missing"),
    (lambda r: r.update(chosen=[]), r"search/chosen\.json: chosen is a list, expected an object"),
    (lambda r: r["tune"].update(budget=9), r"search/chosen\.json: tune differs from grid\.json's in budget"),
    (lambda r: r["chosen"].update(base=r["chosen"]["edge"]), r"chosen\.base is no combination of grid\.json's tune"),
    (lambda r: r["chosen"]["edge"].update(trial="edge-search-00042"), r"chosen trial 'edge-search-00042' of `edge`"),
])
def test_a_malformed_chosen_json_is_refused_naming_the_file_and_key(tmp_path, change, match):
    exp = tuned_experiment(tmp_path / "e")
    _rewrite_chosen(exp, change)
    with pytest.raises(ReportError, match=match):
        build_report(exp, n_images=0, hparams=False)


@pytest.mark.bad_input
@pytest.mark.parametrize("change, match", [
    (lambda t: t.update(mode="up"), r"grid\.json: tune\.mode is 'up', expected \"max\" or \"min\""),
    (lambda t: t.update(budget=0), r"grid\.json: tune\.budget is 0, expected an integer >= 1"),
    (lambda t: t["space"]["edge"].update({"train.lr": {"gaussian": [0, 1]}}),
     r"grid\.json: tune\.space\.edge\.train\.lr is \{'gaussian': \[0, 1\]\}, expected one of"),
])
def test_a_malformed_tune_block_is_refused_naming_the_key(tmp_path, change, match):
    exp = tuned_experiment(tmp_path / "e")
    grid = json.loads((exp / "grid.json").read_text())
    change(grid["tune"])
    (exp / "grid.json").write_text(json.dumps(grid))
    with pytest.raises(ReportError, match=match):
        load_tuning(load_experiment(exp))


@pytest.mark.bad_input
@pytest.mark.parametrize("change, match", [
    (lambda t: t.drop(columns=["status"]), r"trials\.parquet: columns \['status'\] missing"),
    (lambda t: t.drop(columns=["param.train.lr"]), r"trials\.parquet: columns \['param\.train\.lr'\] missing"),
    (lambda t: t.assign(status="stopped"), r"trials\.parquet: status \['stopped'\] unknown"),
    (lambda t: t.assign(combination="base"), r"combination\(s\) \['base'\] are not in grid\.json's tune\.space"),
])
def test_a_malformed_trials_table_is_refused_naming_the_column(tmp_path, change, match):
    exp = tuned_experiment(tmp_path / "e")
    path = exp / "search" / "trials.parquet"
    change(pd.read_parquet(path)).to_parquet(path, index=False)
    with pytest.raises(ReportError, match=match):
        load_tuning(load_experiment(exp))


def test_a_report_on_object_storage_stages_the_search_files(s3, tmp_path):
    from ablate import storage
    from ablate.report.publish import write_report
    from tests.s3_server import BUCKET

    exp = tuned_experiment(tmp_path / "e")
    uri = f"s3://{BUCKET}/tuned/exp"
    storage.upload_dir(exp, uri)
    write_report(uri, n_images=0, hparams=False)
    md = storage.read_text(f"{uri}/report/report.md")
    assert "Tuning: stage 1's search" in md and "+3.5 dB" in md and "not found" not in md
