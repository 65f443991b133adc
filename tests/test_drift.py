"""Drift detectors with known answers: a shift is found after it happens, never before, and a
changeover between products is not drift."""

from __future__ import annotations

import numpy as np
import pytest

from floorsight.models.drift import FeatureDrift, ProcessDrift, ks_critical, ks_statistic, psi


def test_psi_and_ks_on_hand_made_samples() -> None:
    a = [float(i) for i in range(100)]
    assert psi(a, a) == pytest.approx(0.0)
    assert ks_statistic(a, a) == 0.0
    shifted = [x + 50 for x in a]
    assert ks_statistic(a, shifted) == pytest.approx(0.5)
    assert psi(a, shifted) > 1.0
    assert ks_critical(100, 100, 0.05) == pytest.approx(1.358 * np.sqrt(2 / 100), rel=1e-3)


def test_adwin_fires_after_a_known_shift_and_not_before() -> None:
    rng = np.random.default_rng(3)
    series = np.concatenate([rng.normal(0, 1, 1000), rng.normal(3, 1, 300)])
    detector = ProcessDrift()
    fired = [i for i, x in enumerate(series) if detector.update("P-100", {"temp": float(x)})]
    assert fired and min(fired) >= 1000  # nothing before the shift
    assert min(fired) < 1100  # found within 100 points


def test_a_changeover_is_not_drift_but_a_shift_within_a_product_is() -> None:
    rng = np.random.default_rng(5)
    detector = ProcessDrift()
    fired = []
    # two products with very different levels alternate, 300 points per run
    for run in range(6):
        product, level = ("A", 0.0) if run % 2 == 0 else ("B", 25.0)
        for x in rng.normal(level, 1, 300):
            fired += detector.update(product, {"temp": float(x)})
    assert fired == []
    # now A's level really moves
    fired = [i for i, x in enumerate(rng.normal(4, 1, 200)) if detector.update("A", {"temp": x})]
    assert fired


def test_feature_drift_against_the_products_own_reference() -> None:
    rng = np.random.default_rng(11)
    fd = FeatureDrift(reference_size=200, window=100)
    reports = []
    for run in range(4):  # A and B alternate: each is compared with its own reference only
        product, level = ("A", 0.0) if run % 2 == 0 else ("B", 40.0)
        for x, y in zip(rng.normal(level, 1, 300), rng.normal(level, 2, 300), strict=True):
            r = fd.update(product, {"mean": float(x), "std": float(y)})
            if r is not None:
                reports.append(r)
    assert reports and not any(r.drifted for r in reports)
    assert not any(r.multivariate_drift for r in reports)
    # a shift of A's mean by 1.5 sigma: found on that feature only
    late = [
        fd.update("A", {"mean": float(x), "std": float(y)})
        for x, y in zip(rng.normal(1.5, 1, 150), rng.normal(0, 2, 150), strict=True)
    ]
    drifted = [r for r in late if r is not None and r.drifted]
    assert drifted and all(r.drifted == ["mean"] for r in drifted)
    assert any(r.multivariate_drift for r in drifted)
