"""Cross-dataset evaluation: the grid's trained trials scored on another prepared dataset
land in their own folder and their own report section; the experiment's own evaluation
is never overwritten."""

from __future__ import annotations

import hashlib
import shutil

import pytest

pytestmark = pytest.mark.ray


def _digest(p) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def test_evaluate_on_the_demo_set_is_its_own_section(tiny_experiment, tmp_path):
    from ablate.data.demo import ensure_demo
    from ablate.evaluate.run import EvalOptions, evaluate_experiment
    from ablate.report.publish import write_report

    exp = tmp_path / "e2e"
    shutil.copytree(tiny_experiment, exp)  # the session's experiment is read-only for tests
    own = {p: _digest(exp / p) for p in ("results.parquet", "eval/per_image.parquet", "eval/notes.json")}
    demo = ensure_demo(size=32, root=tmp_path / "demo")
    out = evaluate_experiment(EvalOptions(exp=str(exp), data=str(demo), segmenter="ridge"))
    from ablate.data.identity import manifest_sha256

    folder = exp / "eval" / "datasets" / f"{demo.name}-{manifest_sha256(str(demo))[:12]}"  # keyed by its identity
    assert (folder / "per_image.parquet").is_file() and (folder / "notes.json").is_file()
    assert {p: _digest(exp / p) for p in own} == own  # nothing of the grid's own evaluation moved
    assert len(out) == 2 and "psnr" in out.columns and "test/fid" in out.columns
    md = write_report(exp, n_images=0, hparams=False).with_name("report.md").read_text()
    assert f"## Other dataset: {folder.name} ({demo})" in md
    section = md.split(f"## Other dataset: {folder.name}")[1].split("## Methods")[0]
    assert "| l1 " in section and "| l2 " in section and "test split" in section
    # --split all is refused on the grid's own dataset (it would score the training images)
    with pytest.raises(ValueError, match="--split all"):
        evaluate_experiment(EvalOptions(exp=str(exp), split="all", segmenter="ridge"))
