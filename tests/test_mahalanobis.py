"""Robust Mahalanobis detector and the Phase I control limit: known answers."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
from river import stats
from scipy.stats import chi2

from floorsight.models.control_limit import ControlLimitFilter
from floorsight.models.mahalanobis import RobustMahalanobis, chi2_survival


def _correlated(n: int, seed: int) -> list[dict[str, float]]:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        load = rng.gauss(0, 1)
        rows.append(
            {
                "current_a": 10 + 2 * load + rng.gauss(0, 0.5),
                "vibration_mm_s": 2 + 0.3 * load + rng.gauss(0, 0.1),
                "pressure_bar": rng.gauss(5, 0.2),
            }
        )
    return rows


@pytest.mark.parametrize("dof", [1, 2, 3, 4, 5, 8])
def test_chi2_survival_matches_scipy(dof: int) -> None:
    for d2 in [0.01, 0.5, 1.0, 3.84, 10.0, 30.0, 80.0]:
        assert chi2_survival(d2, dof) == pytest.approx(chi2.sf(d2, dof), rel=1e-9, abs=1e-300)


def test_learns_the_exact_sample_mean_and_covariance() -> None:
    rows = _correlated(300, seed=1)
    model = RobustMahalanobis(grace_period=10, huber=None)
    for x in rows:
        model.learn_one(x)
    names = sorted(rows[0])
    data = np.array([[x[k] for k in names] for x in rows])
    np.testing.assert_allclose(model._mean, data.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(model._cov, np.cov(data.T, bias=True), rtol=1e-9)
    # the score is the chi-squared CDF of the squared distance under those moments
    probe = {"current_a": 12.0, "vibration_mm_s": 2.0, "pressure_bar": 5.3}
    d = np.array([probe[k] for k in names]) - data.mean(axis=0)
    cov = np.cov(data.T, bias=True)
    d2 = float(d @ np.linalg.inv(cov + np.diag(1e-6 * np.diag(cov) + 1e-12)) @ d)
    assert model.distance(probe) == pytest.approx(math.sqrt(d2), rel=1e-9)
    assert model.score_one(probe) == pytest.approx(chi2.cdf(d2, 3), rel=1e-9)


def test_scores_are_calibrated_on_gaussian_data() -> None:
    model = RobustMahalanobis(grace_period=10)
    for x in _correlated(5000, seed=2):
        model.learn_one(x)
    scores = np.array([model.score_one(x) for x in _correlated(20000, seed=3)])
    # uniform on 0..1 when the model is right: about 1 % at or above 0.99, 10 % above 0.9
    assert 0.007 < (scores >= 0.99).mean() < 0.013
    assert 0.09 < (scores >= 0.9).mean() < 0.11
    assert 0.45 < np.median(scores) < 0.55


def test_a_combination_is_flagged_though_each_feature_is_in_range() -> None:
    model = RobustMahalanobis(grace_period=10)
    for x in _correlated(2000, seed=4):
        model.learn_one(x)
    # current 2 sd high with vibration 2 sd low: each is ordinary, together they contradict
    assert model.score_one({"current_a": 14.0, "vibration_mm_s": 2.6, "pressure_bar": 5}) < 0.99
    assert model.score_one({"current_a": 14.0, "vibration_mm_s": 1.4, "pressure_bar": 5}) > 0.9999


def test_nothing_is_scored_before_the_grace_period() -> None:
    model = RobustMahalanobis(grace_period=20)
    rows = _correlated(25, seed=5)
    far_away = {"current_a": 100.0, "vibration_mm_s": 50.0, "pressure_bar": -5.0}
    for x in rows[:19]:
        model.learn_one(x)
    assert model.score_one(far_away) == 0.0
    model.learn_one(rows[19])
    assert 1 - 1e-6 < model.score_one(far_away) < 1.0


def test_huber_weights_keep_gross_outliers_from_moving_the_reference() -> None:
    rng = random.Random(6)
    robust, plain = RobustMahalanobis(grace_period=50), RobustMahalanobis(huber=None)
    for i in range(2000):
        value = rng.gauss(0, 1) + (50.0 if i > 100 and i % 20 == 0 else 0.0)  # 5 % gross
        robust.learn_one({"flow_l_min": value})
        plain.learn_one({"flow_l_min": value})
    assert abs(robust._mean[0]) < 0.3  # the outliers would put the mean near 2.5
    assert plain._mean[0] == pytest.approx(2.5, abs=0.3)
    assert robust._cov[0, 0] < 4.0 < plain._cov[0, 0]


def test_half_life_moves_the_mean_half_way_in_that_many_observations() -> None:
    model = RobustMahalanobis(grace_period=5, half_life=50, huber=None)
    for i in range(1000):  # long enough that the exponential weights are in force
        model.learn_one({"temp_c": 40.0 + (0.01 if i % 2 else -0.01)})
    before = model._mean[0]
    for _ in range(50):
        model.learn_one({"temp_c": 50.0})
    assert model._mean[0] == pytest.approx(before + (50.0 - before) / 2, rel=1e-6)


def test_a_missing_feature_scores_on_the_others() -> None:
    model = RobustMahalanobis(grace_period=10, huber=None)
    rows = _correlated(500, seed=8)
    for x in rows:
        model.learn_one(x)
    pressures = np.array([x["pressure_bar"] for x in rows])
    z2 = (5.5 - pressures.mean()) ** 2 / (pressures.var() * (1 + 1e-6) + 1e-12)
    assert model.score_one({"pressure_bar": 5.5, "current_a": math.nan}) == pytest.approx(
        chi2.cdf(z2, 1), rel=1e-9
    )
    # an incomplete observation is not learned
    model.learn_one({"pressure_bar": 99.0})
    assert model.n_learned == 500


def _phase_one_scores(rows: list[dict], phase_one: int) -> list[float]:
    detector = RobustMahalanobis(grace_period=20)
    scores = []
    for x in rows[:phase_one]:
        scores.append(detector.score_one(x))
        detector.learn_one(x)
    return scores


def test_the_control_limit_is_the_quantile_of_honest_phase_one_scores() -> None:
    rows = _correlated(400, seed=9)
    model = ControlLimitFilter(RobustMahalanobis(grace_period=20), phase_one=300, q=0.95)
    for x in rows[:300]:
        assert not model.classify(model.score_one(x))  # nothing is flagged in Phase I
        model.learn_one(x)
    expected = stats.Quantile(0.95)
    for s in _phase_one_scores(rows, 300)[20:]:  # live scores only, each before its learning
        expected.update(s)
    assert model.in_phase_two
    assert model.limit == pytest.approx(expected.get())
    phase_two = [model.classify(model.score_one(x)) for x in rows[300:]]
    assert sum(phase_two) <= 10  # about 5 % of 100 in-control rows


def test_phase_two_learns_only_what_it_does_not_flag() -> None:
    rows = _correlated(300, seed=10)
    fault = {"current_a": 10.0, "vibration_mm_s": 6.0, "pressure_bar": 5.0}
    for protect, learned in [(True, 300), (False, 301)]:
        model = ControlLimitFilter(
            RobustMahalanobis(grace_period=20), phase_one=300, protect_anomaly_detector=protect
        )
        for x in rows:
            model.learn_one(x)
        assert model.classify(model.score_one(fault))
        model.learn_one(fault)
        assert model.anomaly_detector.n_learned == learned
    normal = rows[150]
    assert not model.classify(model.score_one(normal))
    model.learn_one(normal)
    assert model.anomaly_detector.n_learned == 302
