"""Failure prediction with known answers: baseline, alert timing, RUL of a linear trend."""

from __future__ import annotations

import pytest

from floorsight.models.failure import DegradationMonitor, FleetPrior


def _healthy(i: int) -> float:
    return 2.0 + (0.1 if i % 2 else -0.1)  # mean 2.0, sample std ~0.1


def test_healthy_machine_never_alerts_and_baseline_is_per_product() -> None:
    m = DegradationMonitor(baseline_windows=20, half_life=1.0)
    # learning A's baseline: the 20th window completes it and is the first scored
    assert [m.update("A", _healthy(i)) is None for i in range(20)] == [True] * 19 + [False]
    verdicts = [m.update("A", _healthy(i)) for i in range(200)]
    assert not any(v.alert for v in verdicts)
    # product B vibrates more, normally: a new baseline, not an alarm
    assert [m.update("B", 5 + _healthy(i)) is None for i in range(19)] == [True] * 19
    assert not any(m.update("B", 5 + _healthy(i)).alert for i in range(100))


def test_alert_after_confirm_windows_above_the_limit() -> None:
    m = DegradationMonitor(baseline_windows=20, half_life=1e-9, h_alert=4.0, confirm=3)
    for i in range(20):
        m.update("A", _healthy(i))
    std = (20 * 0.01 / 19) ** 0.5  # sample std of the +-0.1 pattern
    big = 2.0 + 10 * std  # h = 10 at once (no smoothing with a tiny half-life)
    alerts = [m.update("A", big).alert for _ in range(5)]
    assert alerts == [False, False, True, True, True]


def test_rul_of_a_linear_trend_is_where_it_meets_the_failure_index() -> None:
    prior = FleetPrior(h_fail=30.0)
    m = DegradationMonitor(baseline_windows=20, half_life=1e-9, trend_windows=10, prior=prior)
    for i in range(20):
        m.update("A", _healthy(i))
    std = (20 * 0.01 / 19) ** 0.5
    v = None
    for k in range(1, 11):  # h = k: one unit per window
        v = m.update("A", 2.0 + k * std)
    assert v.health == pytest.approx(10.0)
    assert v.rul_windows == pytest.approx(20.0)  # from 10 to 30 at 1 per window


def test_a_failure_teaches_the_fleet_its_failure_index() -> None:
    prior = FleetPrior(h_fail=30.0)
    a = DegradationMonitor(baseline_windows=20, half_life=1e-9, prior=prior)
    for i in range(20):
        a.update("A", _healthy(i))
    std = (20 * 0.01 / 19) ** 0.5
    a.update("A", 2.0 + 10 * std)
    a.learn_failure()
    assert prior.failures == 1 and prior.h_fail == pytest.approx((30.0 + 10.0) / 2)
    b = DegradationMonitor(prior=prior)  # a new machine starts from the fleet's estimate
    assert b.prior.h_fail == pytest.approx(20.0)
