"""Text in the report (ablate.report.text): no escape codes, a traceback shown as its last line."""

from __future__ import annotations

import pandas as pd
import pytest

# ---------------------------------------------------------------- finding 6: escape codes and tracebacks


TRACEBACK = ("RayTaskError(RuntimeError): \x1b[36mray::_Inner.train()\x1b[39m (pid=4242, ip=10.0.0.1)\n"
             "Traceback (most recent call last):\n  File \"/x/ray/train.py\", line 12, in train\n    raise "
             "RuntimeError('boom')\n\x1b[31mRuntimeError: boom at step 7\x1b[0m")


@pytest.mark.bad_input
@pytest.mark.usefixtures("no_ray_start")
def test_report_has_no_escape_codes_and_a_traceback_as_its_last_line(tmp_path):
    """Finding F6 (issue 25): Report has no escape codes and a traceback as its last line."""

    from ablate.report.publish import write_report

    exp = tmp_path / "exp"
    (exp / "l1-s1").mkdir(parents=True)
    (exp / "l1-s1" / "error.txt").write_text(TRACEBACK)
    pd.DataFrame({"trial": ["l1-s0", "l1-s1"], "combination": ["l1", "l1"], "seed": [0, 1],
                  "status": ["done", "error"], "error": [None, TRACEBACK],
                  "trial_dir": [None, str(exp / "l1-s1")], "val/psnr": [20.0, None]}).to_parquet(exp / "results.parquet")
    html_path = write_report(exp, n_images=0, hparams=False)
    for text in (html_path.read_text(), html_path.with_name("report.md").read_text()):
        assert "\x1b" not in text and "[36m" not in text and "Traceback (most recent call last)" not in text
        assert "File &quot;/x/ray" not in text and 'File "/x/ray' not in text
        assert f"RuntimeError: boom at step 7 (full traceback: {exp / 'l1-s1' / 'error.txt'})" in text


@pytest.mark.usefixtures("no_ray_start")
def test_plain_text_drops_escape_codes_and_cuts_a_traceback_to_its_last_line():
    """Finding F6 (issue 25): Plain text drops escape codes and cuts a traceback to its last line."""

    from ablate.report.text import plain

    assert plain("\x1b[1;31mred\x1b[0m and \x1b]8;;http://x\x07link\x1b]8;;\x07") == "red and link"
    assert plain(TRACEBACK) == "RuntimeError: boom at step 7 (traceback cut to its last line)"
    assert plain(TRACEBACK + "\nfull log: /exp/logs/trial.log").endswith("(full traceback: /exp/logs/trial.log)")
    assert plain("two\nlines") == "two\nlines"
