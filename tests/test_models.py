"""Online anomaly models: known answers, River's own estimator checks, changeover handling."""

from __future__ import annotations

import random
from datetime import timedelta

import polars as pl
import pytest

from floorsight.features import window_features
from floorsight.models import MultivariateZScore
from floorsight.models.anomaly import AnomalyModel
from floorsight.pipelines.context import SPEC_SCHEMA, ErpContext
from floorsight.records import FaultKind
from floorsight.simulators import Fault, build_plant
from tests.conftest import T0


def test_fires_after_a_known_shift_and_not_before() -> None:
    rng = random.Random(7)
    model = MultivariateZScore(grace_period=30)
    flags = []
    for i in range(400):
        shift = 1.0 if i >= 300 else 0.0  # 10 sigma shift of `b` from observation 300 on
        x = {"a": rng.gauss(0, 1), "b": rng.gauss(5, 0.1) + shift}
        score = model.score_one(x)
        flags.append(score >= 0.9999)
        if score < 0.99:
            model.learn_one(x)
    assert not any(flags[:300])
    assert all(flags[300:])


def test_scores_are_calibrated_on_in_control_data() -> None:
    rng = random.Random(11)
    model = MultivariateZScore(grace_period=50, half_life=1e9)
    scores = []
    for _ in range(5000):
        x = {f"f{k}": rng.gauss(0, 1) for k in range(4)}
        scores.append(model.score_one(x))
        model.learn_one(x)
    tail = scores[50:]
    # one minus a (conservative) Bonferroni p-value: a fraction <= alpha exceeds 1 - alpha
    assert sum(s >= 0.99 for s in tail) / len(tail) <= 0.015
    assert 0.3 < sum(tail) / len(tail) < 0.7


def _features(plant, minutes: float) -> pl.DataFrame:
    r = plant.readings(T0, T0 + timedelta(minutes=minutes))
    ctx = ErpContext(plant.work_orders_frame(), pl.DataFrame(schema=SPEC_SCHEMA))
    return window_features(ctx.join(r), timedelta(seconds=10))


def test_changeover_is_not_an_anomaly_but_a_fault_is() -> None:
    # work orders of 20-30 minutes: several changeovers between the two products
    plant = build_plant(
        1, start=T0, horizon=timedelta(hours=3), seed=5, faults=(), work_order_minutes=(20, 30)
    )
    features = _features(plant, 150)
    assert features["product"].n_unique() == 2
    model = AnomalyModel()
    scores = model.score(features)
    assert scores["work_order"].n_unique() >= 5
    assert not scores["is_anomaly"].any()

    fault = Fault(
        "F-1", "M01", FaultKind.PROCESS_UPSET, T0 + timedelta(minutes=120), timedelta(minutes=10)
    )
    faulty = build_plant(
        1,
        start=T0,
        horizon=timedelta(hours=3),
        seed=5,
        faults=(fault,),
        work_order_minutes=(20, 30),
    )
    scores = AnomalyModel().score(_features(faulty, 150))
    flagged = scores.filter("is_anomaly")
    assert flagged.height > 0
    assert flagged["window_start"].min() >= fault.start - timedelta(seconds=10)
    assert flagged["window_start"].max() < fault.end


@pytest.mark.parametrize("value", [float("nan"), None])
def test_missing_values_are_ignored(value) -> None:
    model = MultivariateZScore(grace_period=1)
    model.learn_one({"a": 1.0})
    model.learn_one({"a": 2.0})
    assert model.score_one({"a": value}) == 0.0
