"""Exact duplicates (at-least-once delivery) are dropped before the windows and counted, and no
single window changes what counts as a complete window for the rest of a run."""

from __future__ import annotations

from datetime import timedelta

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from floorsight.alerts.engine import MachineAlerting
from floorsight.features import WindowAggregator, window_features
from floorsight.features.windows import DUPLICATE_KEY, _distinct_keys
from floorsight.pipelines.context import SPEC_SCHEMA, ErpContext
from floorsight.simulators import build_plant
from tests.conftest import T0, readings

CTX = {
    "work_order": pl.lit("WO-1"),
    "product": pl.lit("P"),
    "material_lot": pl.lit("L"),
    "batch": pl.lit("B-1"),
}
WINDOW = timedelta(seconds=10)
#: the models that judge a window's completeness by its reading count
COUNTING_MODELS = ("anomaly", "drift", "order_offset")


def _ctx(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.with_columns(**CTX)


def test_duplicates_in_a_batch_and_across_batches_are_dropped_and_counted() -> None:
    agg = WindowAggregator(WINDOW, lateness=timedelta(seconds=2))
    first = [("M1", "v", float(t), 1.0) for t in range(6)]
    # the same reading twice in one batch, and one of the first batch again in the next
    closed, late = agg.push(_ctx(readings([*first, ("M1", "v", 3.0, 1.0)])))
    assert closed is None and late is None
    again = [("M1", "v", 2.0, 1.0), ("M1", "w", 2.0, 5.0), ("M1", "v", 13.0, 1.0)]
    closed, late = agg.push(_ctx(readings(again)))
    assert late is None
    assert agg.duplicates == 2  # (M1, v, 3 s) and (M1, v, 2 s); (M1, w, 2 s) is another sensor
    by_sensor = dict(zip(closed["sensor"], closed["n"], strict=True))
    assert by_sensor == {"v": 6, "w": 1}
    # one arriving after its window closed is a late reading, as any reading of a closed window
    closed, late = agg.push(_ctx(readings([("M1", "v", 4.0, 1.0)])))
    assert late["ts"].to_list() == [T0 + timedelta(seconds=4)]
    assert agg.duplicates == 2


KEYS = st.tuples(
    st.sampled_from(["M1", "M2", "M10"]), st.sampled_from(["v", "w"]), st.integers(0, 4)
)


@given(st.lists(KEYS, max_size=40), st.randoms(use_true_random=False))
@settings(max_examples=200, deadline=None)
def test_the_gate_counts_the_distinct_keys_in_time_order_and_out_of_it(keys, rnd) -> None:
    batch = readings([(m, s, float(t), 1.0) for m, s, t in keys])
    exact = batch.select(pl.struct(DUPLICATE_KEY).n_unique()).item() if keys else 0
    in_order = batch.sort("ts", maintain_order=True)
    assert in_order["ts"].is_sorted()
    assert _distinct_keys(in_order) == exact  # each time's machine-and-sensor hashes
    shuffled = batch.sample(fraction=1.0, shuffle=True, seed=rnd.randrange(2**32))
    assert _distinct_keys(shuffled) == exact  # the whole key's hashes


def test_a_batch_in_time_order_loses_its_duplicates_and_keeps_its_order() -> None:
    agg = WindowAggregator(WINDOW)
    rows = [("M1", "v", 1.0, 1.0), ("M2", "v", 1.0, 2.0), ("M1", "v", 1.0, 3.0)]
    rows += [("M1", "v", 2.0, 4.0), ("M1", "w", 2.0, 5.0), ("M2", "v", 2.0, 6.0)]
    batch = _ctx(readings(rows))
    assert batch["ts"].is_sorted()
    agg.push(batch)
    held = pl.concat(agg._buffer)
    assert held["value"].to_list() == [1.0, 2.0, 4.0, 5.0, 6.0], "the first of a key is kept"
    assert agg.duplicates == 1


def test_duplicated_readings_leave_the_windows_as_without_them() -> None:
    plant = build_plant(2, start=T0, horizon=timedelta(minutes=10), seed=4, sample_hz=2)
    clean = _ctx(plant.readings(T0, T0 + timedelta(minutes=5)))
    # at-least-once delivery: every batch is sent again, a part of it twice more
    agg = WindowAggregator(WINDOW, lateness=timedelta(seconds=30))
    got = []
    step = timedelta(seconds=7)
    t = T0
    resent = 0
    while t < T0 + timedelta(minutes=5):
        batch = clean.filter((pl.col("ts") >= t) & (pl.col("ts") < t + step))
        for part in (batch, batch, batch.head(5)):
            closed, late = agg.push(part)
            assert late is None
            got.extend([closed] if closed is not None else [])
        resent += batch.height + min(5, batch.height)
        t += step
    got.extend([f] if (f := agg.flush()) is not None else [])
    key = ["machine_id", "sensor", "window_start", "work_order"]
    expected = window_features(clean, WINDOW).sort(key)
    assert pl.concat(got).sort(key).equals(expected)
    assert agg.duplicates == resent


def _plant_features(hours: float) -> pl.DataFrame:
    plant = build_plant(1, start=T0, horizon=timedelta(hours=hours), seed=8, sample_hz=1)
    ctx = ErpContext(plant.work_orders_frame(), pl.DataFrame(schema=SPEC_SCHEMA))
    return window_features(ctx.join(plant.readings(T0, T0 + timedelta(hours=hours))), WINDOW)


def _score(features: pl.DataFrame) -> pl.DataFrame:
    """The engine's scores, fed ten minutes of windows at a time as the pipeline does."""
    engine = MachineAlerting()
    out = []
    chunks = features.with_columns(_chunk=pl.col("window_start").dt.truncate("10m"))
    for part in chunks.partition_by("_chunk", maintain_order=True):
        scores, _ = engine.update(part.drop("_chunk").sort("window_start"))
        out.append(scores)
    return pl.concat(out)


@pytest.fixture(scope="module")
def four_hours() -> pl.DataFrame:
    return _plant_features(4)


def test_one_window_with_extra_readings_does_not_switch_the_models_off(four_hours) -> None:
    """The issue's case: 12 readings of one machine delivered twice within 3 s (4 sensors, 3 s)
    gave one window 13 readings per sensor instead of 10; every later window of 10 counted as
    incomplete and the anomaly, drift and order_offset models stopped scoring."""
    features = four_hours.sort("window_start")
    bumped_at = features["window_start"].unique().sort()[200]
    bumped = features.with_columns(
        n=pl.when(pl.col("window_start") == bumped_at).then(pl.col("n") + 3).otherwise("n")
    )
    assert bumped.filter(pl.col("window_start") == bumped_at)["n"].min() >= 13

    def scored_after(scores: pl.DataFrame, model: str) -> list:
        rows = scores.filter((pl.col("model") == model) & (pl.col("window_start") > bumped_at))
        return sorted(rows["window_start"].to_list())

    clean, with_burst = _score(features), _score(bumped)
    for model in COUNTING_MODELS:
        normal = scored_after(clean, model)
        assert len(normal) > 500, model  # the model scores the hours after the burst ...
        assert scored_after(with_burst, model) == normal, model  # ... with the burst too


def test_the_duplicates_never_reach_the_models() -> None:
    """End to end through the aggregator: the burst of duplicates is dropped and counted, and
    the models score the same windows as without it."""
    plant = build_plant(1, start=T0, horizon=timedelta(hours=2), seed=8, sample_hz=1)
    ctx = ErpContext(plant.work_orders_frame(), pl.DataFrame(schema=SPEC_SCHEMA))
    data = ctx.join(plant.readings(T0, T0 + timedelta(hours=2)))
    burst_at = T0 + timedelta(minutes=30)
    burst = data.filter(
        (pl.col("ts") >= burst_at) & (pl.col("ts") < burst_at + timedelta(seconds=3))
    )
    assert burst.height == 3 * data["sensor"].n_unique()

    def windows(with_burst: bool) -> tuple[pl.DataFrame, int]:
        agg = WindowAggregator(WINDOW, lateness=timedelta(seconds=5))
        out = []
        minutes = data.with_columns(_m=pl.col("ts").dt.truncate("1m"))
        for minute in minutes.partition_by("_m", maintain_order=True):
            part = minute.drop("_m")
            if with_burst and part["ts"].min() == burst_at:
                part = pl.concat([part, burst]).sort("ts", maintain_order=True)
            closed, _ = agg.push(part)
            out.extend([closed] if closed is not None else [])
        out.extend([f] if (f := agg.flush()) is not None else [])
        return pl.concat(out), agg.duplicates

    clean, none = windows(False)
    deduped, dropped = windows(True)
    assert (none, dropped) == (0, burst.height)
    assert deduped.equals(clean)
    scores = _score(deduped)
    assert set(COUNTING_MODELS) <= set(scores["model"])


def test_the_flow_delivering_every_batch_twice_writes_the_same_features_and_says_so(
    tmp_path, caplog
) -> None:
    # at-least-once delivery through the real dataflow: each batch arrives twice, and the
    # feature table and scores equal one delivery's; the count of dropped copies is logged
    import logging

    from bytewax.testing import TestingSource, run_main

    from floorsight.pipelines.context import ContextStore
    from floorsight.pipelines.flow import PipelineSettings, build_flow
    from floorsight.pipelines.validate import ReadingRules
    from floorsight.storage import Database

    plant = build_plant(2, start=T0, horizon=timedelta(minutes=10), seed=3, faults=())
    plant.write_context(tmp_path / "erp")
    batches = [
        plant.readings(T0 + timedelta(seconds=s), T0 + timedelta(seconds=s + 10))
        for s in range(0, 600, 10)
    ]
    settings = PipelineSettings(rules=ReadingRules.history())

    def features(twice: bool) -> pl.DataFrame:
        db = tmp_path / f"f{int(twice)}.duckdb"
        fed = [b for batch in batches for b in ([batch, batch] if twice else [batch])]
        run_main(build_flow(TestingSource(fed), ContextStore(tmp_path / "erp"), db, settings))
        return Database(db).query(
            "SELECT machine_id, sensor, window_start, work_order, n, mean, std, slope "
            "FROM features ORDER BY ALL"
        )

    once = features(False)
    with caplog.at_level(logging.INFO, logger="floorsight.flow"):
        twice = features(True)
    assert twice.equals(once)
    dropped = sum(b.height for b in batches)
    assert f"({dropped} in all)" in caplog.text
