"""The plateau check behind a study's 'trained to a plateau' claim."""

import math

import numpy as np
import pytest

from ablate.report.convergence import plateau_check, plateau_table, read_curves


def test_a_curve_that_has_levelled_off_is_flat():
    steps = np.arange(0, 2001, 50)
    values = 0.05 + 0.3 * np.exp(-steps / 200)  # settled long before the last 20 %
    c = plateau_check(steps, values)
    assert c.flat is True
    assert c.tail_from == 1600 and c.last_step == 2000 and c.points == 9
    assert abs(c.relative_change) < 0.02
    assert c.first_value == pytest.approx(0.35)


def test_a_curve_still_falling_is_not_flat_and_says_so():
    steps = np.arange(0, 1001, 50)
    values = 0.4 - 0.0002 * steps  # -0.04 over the last 200 steps, 20 % of a ~0.22 mean
    c = plateau_check(steps, values)
    assert c.flat is False
    assert c.tail_change == pytest.approx(-0.04)
    assert "still falling" in c.reason


def test_a_rising_curve_is_not_flat():
    steps = np.arange(0, 1001, 50)
    values = np.where(steps < 800, 0.1, 0.1 + 0.001 * (steps - 800))
    c = plateau_check(steps, values)
    assert c.flat is False and c.relative_change > 0 and "rising" in c.reason


def test_the_tolerance_decides_at_its_edge():
    steps = np.arange(0, 1001, 100)
    values = np.where(steps >= 800, 1.0 + 0.0001 * (steps - 800), 2.0)  # +0.02 over a ~1.01 mean: 1.98 %
    assert plateau_check(steps, values, tolerance=0.02).flat is True
    assert plateau_check(steps, values, tolerance=0.019).flat is False


def test_too_few_points_in_the_tail_is_no_verdict():
    c = plateau_check([0, 500, 1000], [0.3, 0.2, 0.1])
    assert c.flat is None and "1 validation point" in c.reason


def test_order_and_non_finite_values_do_not_matter():
    steps = np.arange(0, 1001, 50)
    values = 0.05 + 0.3 * np.exp(-steps / 100)
    perm = np.random.default_rng(0).permutation(len(steps))
    v = values[perm].copy()
    s = steps[perm]
    a = plateau_check(steps, values)
    noisy = np.append(v, np.nan)
    b = plateau_check(np.append(s, 1000), noisy)
    assert a == b


@pytest.mark.bad_input
@pytest.mark.parametrize("kw, msg", [({"tail": 0}, "tail"), ({"tail": 1.0}, "tail"), ({"tolerance": 0}, "tolerance")])
def test_bad_settings_are_refused(kw, msg):
    with pytest.raises(ValueError, match=msg):
        plateau_check([0, 1, 2], [1, 1, 1], **kw)


@pytest.mark.bad_input
def test_mismatched_lengths_are_refused():
    with pytest.raises(ValueError, match="differ in length"):
        plateau_check([0, 1, 2], [1, 1])


def test_curves_read_back_from_tensorboard_keep_the_last_value_of_a_repeated_step(tmp_path):
    from torch.utils.tensorboard import SummaryWriter

    w = SummaryWriter(str(tmp_path / "base-s0"))
    for step in range(0, 1001, 100):
        w.add_scalar("val/loss/l1", 1.0 / (1 + step), step)
    w.add_scalar("val/loss/l1", 0.5, 1000)  # a resumed trial writes step 1000 again
    w.close()
    other = SummaryWriter(str(tmp_path / "no-val"))
    other.add_scalar("train/loss/total", 1.0, 0)
    other.close()
    curves = read_curves(tmp_path)
    assert list(curves) == ["base-s0"]
    df = curves["base-s0"]
    assert df["step"].tolist() == list(range(0, 1001, 100))
    assert math.isclose(df["value"].iloc[-1], 0.5)
    table = plateau_table(curves)
    assert table.loc[0, "run"] == "base-s0"
    assert not table.loc[0, "flat"] and "rising" in table.loc[0, "reason"]


@pytest.mark.bad_input
def test_a_missing_tensorboard_folder_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="no TensorBoard folder"):
        read_curves(tmp_path / "nope")


def test_the_interval_of_the_tail_change_separates_noise_from_a_trend():
    steps = np.arange(0, 2001, 50)
    rng = np.random.default_rng(1)
    noisy_flat = 0.03 + 0.01 * rng.standard_normal(steps.size)  # +-30 % noise, no trend
    c = plateau_check(steps, noisy_flat)
    assert c.change_ci_low < 0 < c.change_ci_high  # no trend detectable at this noise
    assert c.change_ci_low < c.tail_change < c.change_ci_high
    falling = 0.4 - 0.0001 * steps + 0.0005 * rng.standard_normal(steps.size)
    f = plateau_check(steps, falling)
    assert f.change_ci_high < 0 and f.flat is False  # a real trend: the interval excludes 0
    exact = plateau_check(steps, 0.05 + 0 * steps)
    assert abs(exact.change_ci_low) < 1e-12 and abs(exact.change_ci_high) < 1e-12 and exact.flat is True
