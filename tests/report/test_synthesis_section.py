"""The report's Synthesis section (issue 28): eval/samples.parquet, eval/sample_neighbours.parquet
and the contact sheets of a hand-made experiment (no training, no Ray), rendered into index.html
and report.md; Q1s / Q2s against Welch's test with Hsu's df computed here with scipy."""

from __future__ import annotations

import base64
import io
import json
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from scipy import stats as sps

from ablate.data.sample_store import contact_sheet
from ablate.report.build import build_report
from ablate.report.collect import ReportError, load_experiment
from ablate.report.declared import parse_questions
from ablate.report.stats import analyse
from ablate.report.synthesis import analyse_samples
from tests.helpers.experiments import EDGE, FM, LPIPS, make_exp

SEEDS = (0, 1, 2)
FEATURES = ("density", "fractal_dimension")
# recall of each arm's three seeds: the clear difference Q1s is to find
RECALL = {"retfound-fundus_mae": [0.61, 0.64, 0.66], "lpips": [0.40, 0.44, 0.41],
          "base": [0.50, 0.52, 0.49], "edge": [0.51, 0.50, 0.53]}
MORPH = {"base": [0.90, 1.00, 0.95], "edge": [0.40, 0.45, 0.42],  # edge arm's vessel density closer to real
         "retfound-fundus_mae": [0.5, 0.6, 0.55], "lpips": [0.52, 0.58, 0.6]}
COLOURS = {"retfound-fundus_mae": (200, 60, 40), "lpips": (40, 60, 200), "base": (90, 90, 90), "edge": (40, 160, 60)}


def _png(colour, size=16) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((size, size, 3), colour, np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def add_samples(exp: Path, flagged: tuple[str, ...] = (), seg: str = "unet:vessel_unet", vessels: bool = True
                ) -> pd.DataFrame:
    """eval/samples.parquet, eval/sample_neighbours.parquet, samples/<trial>/contact_sheet.png and
    (`vessels`) eval/sample_vessels/<trial>.png for every trial of `exp`; `flagged`: the trials whose
    prior memorises (in Inception features)."""
    results = pd.read_parquet(exp / "results.parquet")
    rows, neighbours = [], []
    for r in results.to_dict("records"):
        c, s, t = r["combination"], int(r["seed"]), r["trial"]
        i = SEEDS.index(s)
        mem = t in flagged
        row = {"trial": t, "combination": c, "seed": s, "size": 32, "n_samples": 100, "n_real": 20, "n_train": 20,
               "fid": 150.0 + 3 * i, "kid": 0.05 + 0.01 * i, "fd_fm": math.nan, "fm": "",
               "precision": 0.7 + 0.01 * i, "recall": RECALL[c][i], "density": 0.9 + 0.05 * i,
               "coverage": 0.5 + 0.02 * i,
               "mem_share": 0.40 if mem else 0.04, "mem_p": 1e-6 if mem else 0.6, "mem_flag": mem,
               "mem_chance": 1 / 21, "mem_share_px": 0.05, "mem_p_px": 0.5, "mem_flag_px": False, "segmenter": seg}
        for f in FEATURES:
            row[f"morph_w1.{f}"] = MORPH[c][i] if f == "density" else 0.3 + 0.01 * i
            row[f"morph_floor.{f}"] = 0.25
        rows.append(row)
        for space in ("features", "pixels"):
            for k in range(8):
                neighbours.append({"trial": t, "space": space, "rank": k, "sample_id": f"c00000-{k:03d}",
                                   "train_id": f"train{k:02d}", "distance": (1 + k) * (0.1 if mem else 10.0),
                                   "sample_png": _png(COLOURS[c]), "train_png": _png((k * 30, 200, 200))})
        folder = exp / "samples" / t
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "contact_sheet.png").write_bytes(contact_sheet(np.full((16, 32, 32, 3), COLOURS[c], np.uint8)))
        if vessels:
            (exp / "eval" / "sample_vessels").mkdir(parents=True, exist_ok=True)
            (exp / "eval" / "sample_vessels" / f"{t}.png").write_bytes(_png((0, 255, 255)))
    samples = pd.DataFrame(rows)
    (exp / "eval").mkdir(exist_ok=True)
    samples.to_parquet(exp / "eval" / "samples.parquet", index=False)
    pd.DataFrame(neighbours).to_parquet(exp / "eval" / "sample_neighbours.parquet", index=False)
    return samples


def declare(exp: Path, questions: dict) -> None:
    """Record `questions:` in grid.json as `ablate launch` does (parsed)."""
    grid = json.loads((exp / "grid.json").read_text())
    grid["questions"] = parse_questions(questions, "test")
    (exp / "grid.json").write_text(json.dumps(grid))


def hsu(a, b) -> tuple[float, float, float, float]:
    """Welch's difference, its 95 % t interval and p on Hsu's df, with scipy."""
    a, b = np.asarray(a), np.asarray(b)
    diff, se = a.mean() - b.mean(), math.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b))
    df = min(len(a), len(b)) - 1
    half = sps.t.ppf(0.975, df) * se
    return diff, diff - half, diff + half, 2 * sps.t.sf(abs(diff / se), df)


def q1_experiment(root: Path, flagged=(), questions=None) -> Path:
    exp = make_exp(root, {"lpips": LPIPS, "retfound-fundus_mae": FM}, seeds=SEEDS)
    add_samples(exp, flagged)
    if questions is not None:
        declare(exp, questions)
    return exp


def test_q1s_verdict_from_the_declared_primary_matches_welch_with_hsus_df(tmp_path):
    exp = q1_experiment(tmp_path / "e", questions={"q1s": {"primary": ["recall", "fid"]}})
    e = load_experiment(exp)
    s = analyse_samples(e, analyse(e).declared)
    assert s is not None and s.q1s.verdict == "yes", s.q1s.sentence
    t = s.q1s.tests.set_index("metric")
    diff, low, high, p = hsu(RECALL["retfound-fundus_mae"], RECALL["lpips"])
    r = t.loc["recall"]
    assert r["role"] == "primary" and r["votes"] and r["df"] == 2
    assert np.isclose(r["diff"], diff) and np.isclose(r["ci_low"], low) and np.isclose(r["ci_high"], high)
    assert np.isclose(r["p"], p) and np.isclose(r["p_holm"], p)  # fid cannot vote: a family of one
    assert r["p_holm"] < 0.05 and r["verdict"] == "better"
    # FID on 20 real images is below the floor: primary, shown, not voted, and the sentence says so
    assert t.loc["fid@20", "role"] == "primary" and not t.loc["fid@20", "votes"]
    assert t.loc["fid@20", "excluded"].startswith("below sample-size floor (n = 20 images < 2000")
    assert "fid@20 (below sample-size floor" in s.q1s.sentence
    assert f"recall {diff:+.3g}" in s.q1s.sentence and "Holm over the 1 voting test(s)" in s.q1s.sentence
    # density has no better direction: never compared; fd_fm was never computed: not shown
    assert "density" not in t.index and not any(m.startswith("fd_fm") for m in t.index)
    # Q2s was not declared: no verdict, said so
    assert s.q2s.verdict == "not declared" and "no verdict" in s.q2s.sentence
    # the per-arm table: mean and t interval over the three seeds (scipy), n shown
    row = s.summary.set_index(["column", "combination"]).loc[("recall", "lpips")]
    lo, hi = sps.t.interval(0.95, 2, loc=np.mean(RECALL["lpips"]), scale=sps.sem(RECALL["lpips"]))
    assert row["n"] == 3 and np.isclose(row["ci_low"], lo) and np.isclose(row["ci_high"], hi)
    floor = s.summary.set_index(["column", "combination"]).loc[("morph_w1.density", "lpips"), "floor"]
    assert floor == 0.25


def test_section_in_both_documents_with_sheets_strips_and_no_memorisation_sentence(tmp_path):
    exp = q1_experiment(tmp_path / "e", questions={"q1s": {"primary": ["recall"]}})
    html_path = build_report(exp, n_images=0, hparams=False)
    html, md = html_path.read_text(), html_path.with_name("report.md").read_text()
    for doc in (html, md):
        assert "Synthesis: the prior's samples" in doc and "Q1s (samples: foundation-model term vs LPIPS term): YES" in doc
        assert "memorises its training set" not in doc and "MEMORISATION" not in doc
        assert "morph_w1.density" in doc and "floor 0.25" in doc and "(n=3)" in doc
    section = html[html.index('<section id="synthesis">'):html.index("</section>")]
    # each arm's contact sheet (its lowest seed), embedded as the file's own bytes
    results = pd.read_parquet(exp / "results.parquet")
    for arm in ("lpips", "retfound-fundus_mae"):
        trial = results[(results["combination"] == arm) & (results["seed"] == 0)]["trial"].iloc[0]
        sheet = (exp / "samples" / trial / "contact_sheet.png").read_bytes()
        assert f'alt="{arm} contact sheet" src="data:image/png;base64,{base64.b64encode(sheet).decode()}"' in section
        vessels = (exp / "eval" / "sample_vessels" / f"{trial}.png").read_bytes()  # beside it, its vessel maps
        assert (f'alt="{arm} samples with their vessel maps" src="data:image/png;base64,'
                f'{base64.b64encode(vessels).decode()}"') in section
    # the strips: 2 arms x 2 spaces x 8 pairs, sample above train, distance under
    assert section.count('alt="sample c00000-') == 32 and section.count('alt="train image train') == 32
    assert section.count("<tr><td>10</td><td>20</td><td>30</td>") == 4  # features and pixels of both arms
    # Markdown has the distances and says where the pictures are
    assert "10, 20, 30, 40, 50, 60, 70, 80" in md and "contact_sheet.png" in md


def test_a_memorising_trial_is_said_in_the_section_and_the_warnings(tmp_path):
    exp = make_exp(tmp_path / "e", {"lpips": LPIPS, "retfound-fundus_mae": FM}, seeds=SEEDS)
    trial = pd.read_parquet(exp / "results.parquet").query("combination == 'lpips' and seed == 1")["trial"].iloc[0]
    add_samples(exp, flagged=(trial,))
    html_path = build_report(exp, n_images=0, hparams=False)
    html, md = html_path.read_text(), html_path.with_name("report.md").read_text()
    sentence = ("lpips seed 1: 40 % of samples are closer to a training image than 95 % of test images are "
                "(chance 5 %; in Inception features, p = 1.000e-06): this prior memorises its training set.")
    for doc in (html, md):
        assert doc.count(sentence) == 2  # among the warnings at the top, and in the section
    # the flagged trial's strips are shown although it is not its arm's lowest seed
    section = html[html.index('<section id="synthesis">'):html.index("</section>")]
    assert f"{trial} (seed 1)</th>" in section and section.count("<tr><td>0.1</td><td>0.2</td>") == 2  # features, pixels
    # undeclared questions: said, no verdict
    assert "Q1s and Q2s: not declared" in html and "NOT DECLARED" in md


def test_q2s_with_a_vessel_primary_needs_a_trained_unet(tmp_path):
    for seg, expect in (("unet:vessel_unet", "yes"), ("ridge:meijering+otsu", "segmenter not trained")):
        exp = make_exp(tmp_path / seg.replace(":", "_"), {"base": {}, "edge": EDGE}, seeds=SEEDS)
        add_samples(exp, seg=seg)
        declare(exp, {"q2s": {"primary": ["morph_w1.density"]}})
        e = load_experiment(exp)
        s = analyse_samples(e, analyse(e).declared)
        assert s is not None and s.q2s.verdict == expect, s.q2s.sentence
        r = s.q2s.tests.set_index("metric").loc["morph_w1.density"]
        diff, low, high, _ = hsu(MORPH["edge"], MORPH["base"])
        assert np.isclose(r["diff"], diff) and np.isclose(r["ci_low"], low) and np.isclose(r["ci_high"], high)
        assert r["effect"] == "better"
        assert "morph_w1.density -0.527 SD" in s.q2s.sentence  # in real SDs, the declaration's unit
        assert s.q1s.verdict == "not declared"


def _without_time(text: str) -> str:
    return re.sub(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", "TIME", text)


def test_without_sample_tables_there_is_no_section_and_nothing_else_changes(tmp_path):
    exp = make_exp(tmp_path / "e", {"lpips": LPIPS, "retfound-fundus_mae": FM}, seeds=SEEDS)
    html_path = build_report(exp, n_images=0, hparams=False)
    before = {p: _without_time(html_path.with_name(p).read_text()) for p in ("index.html", "report.md")}
    for doc in before.values():
        assert "Synthesis" not in doc and "synthesis" not in doc and "Q1s" not in doc
    assert "Q1s" not in set(pd.read_parquet(exp / "report" / "questions.parquet").get("question", []))
    # with the tables, the section is added and the rest stays as it was
    add_samples(exp)
    build_report(exp, n_images=0, hparams=False)
    html = _without_time((exp / "report" / "index.html").read_text())
    md = _without_time((exp / "report" / "report.md").read_text())
    assert '<section id="synthesis">' in html
    html = re.sub(r'<section id="synthesis">.*?</section>\n', "", html, flags=re.DOTALL)
    md = re.sub(r"## Synthesis: the prior's samples\n.*?(?=## Methods)", "", md, flags=re.DOTALL)
    assert html == before["index.html"] and md == before["report.md"]


def test_a_sample_table_without_a_column_the_report_reads_is_an_error_naming_it(tmp_path):
    exp = q1_experiment(tmp_path / "e")
    t = pd.read_parquet(exp / "eval" / "samples.parquet").drop(columns=["mem_flag_px"])
    t.to_parquet(exp / "eval" / "samples.parquet", index=False)
    with pytest.raises(ReportError, match=r"samples\.parquet: columns \['mem_flag_px'\] missing"):
        load_experiment(exp)


@pytest.mark.bad_input
@pytest.mark.parametrize("primary, match", [
    (["density"], r"q1s\.primary: density may not vote"),
    (["mem_share"], r"q1s\.primary: mem_share may not vote"),
    (["psnr"], r"q1s\.primary: 'psnr' is no metric of the samples"),
    (["recall", "fid", "kid"], r"at most 2"),
])
def test_declared_sample_primaries_are_checked(primary, match):
    with pytest.raises(ValueError, match=match):
        parse_questions({"q1s": {"primary": primary}}, "g.yaml: questions")


@pytest.mark.bad_input
def test_a_refused_sample_primary_is_offered_only_metrics_that_may_vote():
    with pytest.raises(ValueError) as e:
        parse_questions({"q2s": {"primary": ["density"]}}, "g.yaml: questions")
    offered = str(e.value).split("declare one of ", 1)[1]
    assert "'precision'" in offered and "'morph_w1.density'" in offered
    assert "'density'" not in offered and "'mem_share'" not in offered


def test_sample_primaries_are_kept_where_declared_and_refused_for_q1():
    with pytest.raises(ValueError, match=r"q1\.primary: unknown metric"):  # a sample metric is no Q1 metric
        parse_questions({"q1": {"primary": ["recall"]}}, "g.yaml: questions")
    assert parse_questions({"q2s": {"primary": ["morph_w1.density", "fd_fm"]}}, "x")["q2s"] == {
        "primary": ["morph_w1.density", "fd_fm"]}
    assert "q1s" not in parse_questions({}, "x")  # no default: undeclared stays undeclared


def test_a_report_on_object_storage_stages_the_sample_tables_and_contact_sheets(s3, tmp_path):
    from ablate import storage
    from ablate.report.publish import write_report
    from tests.s3_server import BUCKET

    exp = q1_experiment(tmp_path / "e", questions={"q1s": {"primary": ["recall"]}})
    uri = f"s3://{BUCKET}/synthesis/exp"
    storage.upload_dir(exp, uri)
    write_report(uri, n_images=0, hparams=False)
    html = storage.read_text(f"{uri}/report/index.html")
    trial = pd.read_parquet(exp / "results.parquet").query("combination == 'lpips' and seed == 0")["trial"].iloc[0]
    sheet = base64.b64encode((exp / "samples" / trial / "contact_sheet.png").read_bytes()).decode()
    assert f'alt="lpips contact sheet" src="data:image/png;base64,{sheet}"' in html
    vessels = base64.b64encode((exp / "eval" / "sample_vessels" / f"{trial}.png").read_bytes()).decode()
    assert f'alt="lpips samples with their vessel maps" src="data:image/png;base64,{vessels}"' in html
    assert "Q1s (samples: foundation-model term vs LPIPS term): YES" in html and "not found" not in html


def test_an_evaluation_from_before_the_vessel_pictures_shows_the_contact_sheets_alone(tmp_path):
    exp = make_exp(tmp_path / "e", {"lpips": LPIPS, "retfound-fundus_mae": FM}, seeds=SEEDS)
    add_samples(exp, vessels=False)
    html = build_report(exp, n_images=0, hparams=False).read_text()
    assert html.count(" contact sheet\" src=") == 2 and "samples with their vessel maps\"" not in html


def test_a_primary_evaluation_could_not_compute_is_left_out_not_counted_as_missing_seeds(tmp_path):
    # fd_fm is NaN in every trial (no fundus model) and morph_w1.fractal_dimension in one: neither
    # may turn the pair into "not enough seeds" or vote on fewer trials than were run
    exp = q1_experiment(tmp_path / "e", questions={"q1s": {"primary": ["recall", "fd_fm"]}})
    t = pd.read_parquet(exp / "eval" / "samples.parquet")
    t.loc[0, "morph_w1.fractal_dimension"] = math.nan
    t.to_parquet(exp / "eval" / "samples.parquet", index=False)
    e = load_experiment(exp)
    s = analyse_samples(e, analyse(e).declared)
    assert s is not None and s.q1s.verdict == "yes", s.q1s.sentence
    tests = s.q1s.tests.set_index("metric")
    assert tests.loc["fd_fm@20", "excluded"] == "not computable in 6 of 6 trial(s) (NaN in eval/samples.parquet)"
    assert tests.loc["morph_w1.fractal_dimension", "excluded"].startswith("not computable in 1 of 6")
    assert tests["votes"].sum() == 1 and tests.loc["recall", "votes"]
    note = s.metrics.set_index("metric").loc["morph_w1.fractal_dimension", "note"]
    assert "NaN in 1 trial(s)" in note


def test_fd_in_the_foundation_arms_own_model_is_trained_on(tmp_path):
    exp = q1_experiment(tmp_path / "e", questions={"q1s": {"primary": ["recall"]}})
    t = pd.read_parquet(exp / "eval" / "samples.parquet")
    t["fm"], t["fd_fm"] = "fundus_mae", 40.0 + t["seed"]  # FM's foundation term is in fundus_mae features
    t.to_parquet(exp / "eval" / "samples.parquet", index=False)
    e = load_experiment(exp)
    s = analyse_samples(e, analyse(e).declared)
    assert s is not None
    excluded = s.q1s.tests.set_index("metric").loc["fd_fm@20", "excluded"]
    assert excluded == "trained on (`retfound-fundus_mae`: foundation term in fundus_mae features)"
    assert "in fundus_mae features" in s.metrics.set_index("metric").loc["fd_fm@20", "note"]
