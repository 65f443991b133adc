"""River's own estimator checks, run on every online model floorsight ships.

River's checks that need a dataset would download one; here they get a local, seeded stream
with labelled anomalies instead (same checks, no network), so every check runs.
"""

from __future__ import annotations

import functools
import random

import pytest
from river import checks

from floorsight.models import MultivariateZScore
from floorsight.models.control_limit import ControlLimitFilter
from floorsight.models.mahalanobis import RobustMahalanobis

#: Every River-protocol estimator we ship, with test parameters.
ESTIMATORS = [
    MultivariateZScore(grace_period=5),
    RobustMahalanobis(grace_period=5),
    RobustMahalanobis(grace_period=5, half_life=50.0, huber=None),
    ControlLimitFilter(RobustMahalanobis(grace_period=5), phase_one=30),
]


def _local_stream(n: int = 400, seed: int = 3) -> list[tuple[dict, bool]]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        anomalous = i > 100 and rng.random() < 0.05
        x = {
            "a": rng.gauss(0, 1) + (6 if anomalous else 0),
            "b": rng.gauss(10, 2),
            "c": rng.gauss(-3, 0.5),
        }
        rows.append((x, anomalous))
    return rows


def _checks():
    for estimator in ESTIMATORS:
        for river_check in checks.yield_checks(estimator):
            check = river_check
            if isinstance(check, functools.partial) and "dataset" in check.keywords:
                check = functools.partial(check.func, dataset=_local_stream())
            name = getattr(check, "__name__", None) or check.func.__name__
            yield pytest.param(estimator, check, id=f"{type(estimator).__name__}-{name}")


@pytest.mark.parametrize(("estimator", "check"), list(_checks()))
def test_river_check(estimator, check) -> None:
    check(estimator.clone())
