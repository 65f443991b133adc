"""SPC with known answers: run rules on crafted series, limits, capability, EWMA and CUSUM."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from floorsight.models.spc import (
    D2,
    CUSUMChart,
    EWMAChart,
    IndividualsChart,
    ProductCharts,
    RunRules,
    XbarRChart,
    capability,
)

# standardized series (center 0, sigma 1) that complete exactly one rule, at a known point
CRAFTED = {
    1: ([0.1, -0.2, 3.5, 0.3], {(2, 1)}),
    2: ([-0.5] + [0.5] * 9, {(9, 2)}),
    3: ([0.0, 0.1, 0.2, 0.3, 0.4, 0.5], {(5, 3)}),
    4: ([0.5, -0.5] * 7, {(13, 4)}),
    5: ([0.1, 2.5, 0.2, 2.6], {(3, 5)}),
    6: ([0.1, 1.5, 1.2, 0.3, 1.4, 1.6], {(5, 6)}),
    7: (
        [0.1, -0.2, -0.1, 0.3, 0.2, -0.1, -0.2, 0.3, 0.2, -0.1, -0.3, 0.1, 0.2, -0.1, -0.2],
        {(14, 7)},
    ),
    8: ([1.5, -1.5, 1.2, -1.3, 1.4, -1.2, 1.6, -1.1], {(7, 8)}),
}


@pytest.mark.parametrize("rule", sorted(CRAFTED))
def test_each_nelson_rule_fires_exactly_where_its_pattern_completes(rule) -> None:
    series, expected = CRAFTED[rule]
    chart = IndividualsChart(center=10.0, sigma=2.0)  # the series is in sigma units around 10
    got = {(v.index, v.rule) for i, z in enumerate(series) for v in chart.update(10 + 2 * z)}
    assert got == expected


def test_western_electric_rule_2_is_a_run_of_eight() -> None:
    we = RunRules(rules=(2,), western_electric=True)
    nelson = RunRules(rules=(2,))
    assert [we.update(0.5) for _ in range(8)][-1] == [2]
    assert [nelson.update(0.5) for _ in range(8)][-1] == []
    assert nelson.update(0.5) == [2]  # the ninth


def test_phase_one_estimates_limits_from_the_moving_range() -> None:
    chart = IndividualsChart(phase1=4)
    for x in (1.0, 3.0, 2.0, 4.0):
        assert chart.update(x) == []
    sigma = (2 + 1 + 2) / 3 / 1.128
    lcl, center, ucl = chart.limits
    assert center == pytest.approx(2.5)
    assert ucl == pytest.approx(2.5 + 3 * sigma) and lcl == pytest.approx(2.5 - 3 * sigma)
    assert [v.rule for v in chart.update(2.5 + 3.1 * sigma)] == [1]


def test_xbar_r_chart_limits_and_a_shifted_subgroup() -> None:
    chart = XbarRChart(n=4, phase1=2)
    for x in (10, 12, 11, 13, 9, 11, 10, 12):  # subgroup means 11.5 and 10.5, ranges 3 and 3
        assert chart.update(x) == []
    limits = chart.limits()
    a2 = 3 / (D2[4] * 2)
    assert limits["xbar"] == pytest.approx((11 - a2 * 3, 11, 11 + a2 * 3))
    assert limits["range"] == pytest.approx((0.0, 3.0, 2.282 * 3))
    out = [v.rule for x in (20, 21, 20, 21) for v in chart.update(x)]
    assert out == [1]


def test_capability_equals_the_hand_computed_values() -> None:
    xs = [9.9, 10.1, 10.0, 10.2, 9.8]
    cap = capability(xs, lsl=9.4, usl=10.5)
    within = (0.2 + 0.1 + 0.2 + 0.4) / 4 / 1.128
    overall = math.sqrt((0.01 + 0.01 + 0.0 + 0.04 + 0.04) / 4)
    assert cap.mean == pytest.approx(10.0)
    assert cap.cp == pytest.approx(1.1 / (6 * within))
    assert cap.cpk == pytest.approx(0.5 / (3 * within))
    assert cap.pp == pytest.approx(1.1 / (6 * overall))
    assert cap.ppk == pytest.approx(0.5 / (3 * overall))
    assert cap.cpk == pytest.approx(0.83555, abs=1e-4)
    with pytest.raises(ValueError, match="lsl < usl"):
        capability(xs, 10.5, 9.4)


def test_cusum_signals_at_the_known_point_after_a_shift_and_not_before() -> None:
    chart = CUSUMChart(mu0=0.0, sigma=1.0, k=0.5, h=5.0)
    series = [0.0] * 50 + [1.5] * 20
    first = next(i for i, x in enumerate(series) if chart.update(x))
    # C+ grows by 1.5 - 0.5 = 1 per point after the shift and must exceed 5: the sixth point
    assert first == 50 + 5


def test_ewma_signals_after_a_shift_and_not_before() -> None:
    chart = EWMAChart(mu0=0.0, sigma=1.0, lam=0.2, L=3.0)
    series = [0.0] * 50 + [1.5] * 20
    signals = [chart.update(x) for x in series]
    assert not any(signals[:50])
    first = signals.index(True)
    # z = 1.5 (1 - 0.8^t) against 3 sqrt(0.2 / 1.8 (1 - 0.8^(2(50+t)))) ~ 1.0: t = 5
    assert first == 50 + 4


def test_a_new_product_starts_its_own_phase_one() -> None:
    charts = ProductCharts(lambda: IndividualsChart(phase1=5))
    for x in (10.0, 10.2, 9.9, 10.1, 10.0):
        assert charts.update("P-100", x) == []
    # a changeover to another product with another level is not an alarm: its own phase I
    assert all(charts.update("P-200", x) == [] for x in (32.0, 32.1, 31.9, 32.0, 32.2))
    assert charts.update("P-200", 32.05) == []
    assert [v.rule for v in charts.update("P-100", 12.0)] == [1]


# ------------------------------------------------------------------------------------------------
# the Nelson rules as written in the textbooks, on the last points: the reference the online
# run lengths of RunRules must agree with


def _last(pts, n):
    return pts[-n:] if len(pts) >= n else None


def _reference_rule(r: int, p: list[float], we: bool) -> bool:
    if r == 1:
        return abs(p[-1]) > 3
    if r == 2:
        w = _last(p, 8 if we else 9)
        return w is not None and (all(z > 0 for z in w) or all(z < 0 for z in w))
    if r in (3, 4):
        w = _last(p, 6 if r == 3 else 14)
        if w is None:
            return False
        d = [b - a for a, b in itertools.pairwise(w)]
        if r == 3:
            return all(x > 0 for x in d) or all(x < 0 for x in d)
        return all(d[i] * d[i + 1] < 0 for i in range(len(d) - 1))
    if r in (5, 6):
        k, n, limit = (2, 3, 2.0) if r == 5 else (4, 5, 1.0)
        w = _last(p, n)
        return w is not None and any(
            sign * w[-1] > limit and sum(sign * z > limit for z in w) >= k for sign in (1, -1)
        )
    if r == 7:
        w = _last(p, 15)
        return w is not None and all(abs(z) < 1 for z in w)
    w = _last(p, 8)
    return (
        w is not None
        and all(abs(z) > 1 for z in w)
        and any(z > 1 for z in w)
        and any(z < -1 for z in w)
    )


@pytest.mark.parametrize("we", [False, True])
@pytest.mark.parametrize("seed", range(6))
def test_online_run_rules_agree_with_the_textbook_checks(seed, we) -> None:
    rng = np.random.default_rng(seed)
    # walks, trends, alternation, plateaus and repeats, so that every rule fires
    parts = [
        rng.normal(0, 1, 300),
        np.cumsum(rng.normal(0, 0.4, 200)),
        np.tile([1.5, -1.5], 40) + rng.normal(0, 0.1, 80),
        np.linspace(-3, 3, 40),
        np.full(30, 0.5),
        rng.choice([-2.5, 2.5, 0.0, 1.2, -1.2], 300),
    ]
    zs = [float(z) for z in np.concatenate([parts[i] for i in rng.permutation(len(parts))])]
    rules = RunRules(western_electric=we)
    fired = set()
    for i, z in enumerate(zs):
        pts = zs[max(0, i - 14) : i + 1]
        expected = [r for r in rules.rules if _reference_rule(r, pts, we)]
        got = rules.update(z)
        assert got == expected, (i, z, got, expected)
        fired.update(got)
    assert fired == set(range(1, 9))
