"""Window features equal hand-computed values, in batch and in a stream."""

from __future__ import annotations

import math
from datetime import timedelta

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from floorsight.features import WindowAggregator, window_features
from floorsight.features.windows import _cuts, _newest
from floorsight.simulators import build_plant
from tests.conftest import T0, readings

CTX = {
    "work_order": pl.lit("WO-1"),
    "product": pl.lit("P"),
    "material_lot": pl.lit("L"),
    "batch": pl.lit("B-1"),
}


def test_tumbling_window_statistics_match_hand_computation() -> None:
    r = readings([("M1", "v", t, x) for t, x in [(0, 2.0), (2, 4.0), (4, 9.0), (10, 1.0)]])
    f = window_features(r.with_columns(**CTX), timedelta(seconds=10)).sort("window_start")
    first = f.row(0, named=True)
    assert first["window_start"] == T0
    assert first["window_end"] == T0 + timedelta(seconds=10)
    assert first["n"] == 3
    assert first["mean"] == pytest.approx(5.0)
    assert first["std"] == pytest.approx(
        math.sqrt(((2 - 5) ** 2 + (4 - 5) ** 2 + (9 - 5) ** 2) / 2)
    )
    assert (first["min"], first["max"], first["last"]) == (2.0, 9.0, 9.0)
    assert first["rms"] == pytest.approx(math.sqrt((4 + 16 + 81) / 3))
    # least squares through (0, 2), (2, 4), (4, 9): slope = 7/4
    assert first["slope"] == pytest.approx(1.75)
    second = f.row(1, named=True)
    assert (second["n"], second["mean"], second["std"]) == (1, 1.0, None)


def test_sliding_windows_count_each_reading_in_every_window_holding_it() -> None:
    r = readings([("M1", "v", t, float(t)) for t in range(10)]).with_columns(**CTX)
    f = window_features(r, timedelta(seconds=4), timedelta(seconds=2)).sort("window_start")
    starts = [(w - T0).total_seconds() for w in f["window_start"]]
    assert starts == [-2, 0, 2, 4, 6, 8]
    assert f["n"].to_list() == [2, 4, 4, 4, 4, 2]
    assert f["mean"].to_list() == [0.5, 1.5, 3.5, 5.5, 7.5, 8.5]


def test_window_spanning_a_changeover_is_split_by_work_order() -> None:
    r = readings([("M1", "v", t, 1.0) for t in range(10)]).with_columns(
        work_order=pl.when(pl.col("ts") < T0 + timedelta(seconds=6))
        .then(pl.lit("WO-1"))
        .otherwise(pl.lit("WO-2")),
        product=pl.lit("P"),
        material_lot=pl.lit("L"),
        batch=pl.lit("B"),
    )
    f = window_features(r, timedelta(seconds=10))
    assert sorted(zip(f["work_order"], f["n"], strict=True)) == [("WO-1", 6), ("WO-2", 4)]


@pytest.mark.parametrize("hop_s", [None, 5])
@pytest.mark.parametrize("batch_s", [0.7, 3.0, 17.0])
def test_streamed_windows_equal_batch_windows(hop_s, batch_s) -> None:
    plant = build_plant(2, start=T0, horizon=timedelta(minutes=5), seed=3)
    end = T0 + timedelta(minutes=3)
    hop = timedelta(seconds=hop_s) if hop_s else None
    expected = window_features(
        plant.readings(T0, end).with_columns(**CTX), timedelta(seconds=10), hop
    )
    aggs = {m.machine_id: WindowAggregator(timedelta(seconds=10), hop) for m in plant.machines}
    got, t = [], T0
    while t < end:
        batch = plant.readings(t, min(t + timedelta(seconds=batch_s), end)).with_columns(**CTX)
        for (machine,), part in batch.partition_by("machine_id", as_dict=True).items():
            closed, late = aggs[machine].push(part)
            assert late is None
            got.extend([closed] if closed is not None else [])
        t += timedelta(seconds=batch_s)
    got.extend(f for a in aggs.values() if (f := a.flush()) is not None)
    key = ["machine_id", "sensor", "window_start"]
    assert_frame_equal(pl.concat(got).sort(key), expected.sort(key), check_exact=False)


@pytest.mark.parametrize("hop_s", [None, 5])
@pytest.mark.parametrize("batch_s", [0.7, 17.0])
def test_windows_of_many_machines_in_time_order_equal_batch_windows(hop_s, batch_s) -> None:
    # one aggregator, every machine, batches in time order: the windows' cuts are slices
    plant = build_plant(3, start=T0, horizon=timedelta(minutes=5), seed=4)
    end = T0 + timedelta(minutes=2)
    hop = timedelta(seconds=hop_s) if hop_s else None
    every = plant.readings(T0, end).with_columns(**CTX).sort("ts", maintain_order=True)
    expected = window_features(every, timedelta(seconds=10), hop)
    agg = WindowAggregator(timedelta(seconds=10), hop, lateness=timedelta(seconds=1))
    got, t, sliced = [], T0, 0
    while t < end:
        batch = every.filter((pl.col("ts") >= t) & (pl.col("ts") < t + timedelta(seconds=batch_s)))
        data = pl.concat([*agg._buffer, batch])
        sliced += _cuts(data, t, t) is not None
        closed, late = agg.push(batch)
        assert late is None
        got.extend([closed] if closed is not None else [])
        t += timedelta(seconds=batch_s)
    got.extend([f] if (f := agg.flush()) is not None else [])
    assert sliced > 0  # the time-ordered path was taken
    key = ["machine_id", "sensor", "window_start"]
    assert_frame_equal(pl.concat(got).sort(key), expected.sort(key), check_exact=False)


def test_window_cuts_are_slices_only_for_readings_in_time_order() -> None:
    # one reading a second, in time order
    r = readings([("M1", "t", float(i), float(i)) for i in range(20)]).with_columns(**CTX)
    at = r["ts"][10]
    first, second = r.slice(0, 12), r.slice(12)
    assert _cuts(pl.concat([first, second]), at, at) == (10, 10)
    empty = r.clear()  # the held rows of a close that kept none
    assert _cuts(pl.concat([empty, r]), at, at) == (10, 10)
    # a frame that starts before the one before it ended: filtered, not sliced
    overlap = r.slice(8)
    assert _cuts(pl.concat([first, overlap]), at, at) is None
    shuffled = r.sample(fraction=1.0, shuffle=True, seed=1)
    assert _cuts(shuffled, at, at) is None
    missing = r.with_columns(ts=pl.when(pl.int_range(pl.len()) == 3).then(None).otherwise("ts"))
    assert _cuts(missing, at, at) is None
    # a bound per machine (machines on different clocks): filtered
    assert _cuts(r, pl.lit(at), at) is None


def test_newest_reading_of_each_machine_in_and_out_of_time_order() -> None:
    plant = build_plant(4, start=T0, horizon=timedelta(minutes=2), seed=5)
    r = plant.readings(T0, T0 + timedelta(minutes=1)).sort("ts", maintain_order=True)
    expected = r.group_by("machine_id").agg(pl.col("ts").max()).sort("machine_id")
    assert r.select(pl.col("machine_id").n_unique()).item() == 4
    for frame in (r, r.sample(fraction=1.0, shuffle=True, seed=2)):
        assert_frame_equal(_newest(frame).sort("machine_id"), expected)


def test_late_readings_within_lateness_count_and_later_ones_are_returned() -> None:
    agg = WindowAggregator(timedelta(seconds=10), lateness=timedelta(seconds=5))
    ctx = lambda f: f.with_columns(**CTX)  # noqa: E731
    closed, late = agg.push(ctx(readings([("M1", "v", t, 1.0) for t in range(0, 14)])))
    assert closed is None and late is None  # watermark 13 - 5 = 8: window [0, 10) still open
    # 3 s late, inside the allowed lateness: counted in window [0, 10)
    closed, late = agg.push(ctx(readings([("M1", "v", 7.5, 100.0), ("M1", "v", 16.0, 1.0)])))
    assert late is None
    assert closed["n"].to_list() == [11] and closed["max"].to_list() == [100.0]
    # window [0, 10) is closed now: a reading for it comes back as late
    closed, late = agg.push(ctx(readings([("M1", "v", 9.0, 5.0), ("M1", "v", 17.0, 1.0)])))
    assert late is not None and late["value"].to_list() == [5.0]
