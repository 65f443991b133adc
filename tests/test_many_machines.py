"""One window aggregator and one context hold serve many machines exactly as one per machine would.

The dataflow keys these steps by shard (a group of machines), so each machine must keep its own
watermark, lateness and context hold inside a frame of many machines.
"""

from __future__ import annotations

from datetime import timedelta

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from floorsight.features import WindowAggregator, window_features, windows
from floorsight.pipelines.context import SPEC_SCHEMA, ContextHold, ErpContext
from floorsight.simulators import build_plant
from tests.conftest import T0, readings

CTX = {
    "work_order": pl.lit("WO-1"),
    "product": pl.lit("P"),
    "material_lot": pl.lit("L"),
    "batch": pl.lit("B-1"),
}
KEY = ["machine_id", "sensor", "window_start", "work_order"]


def _batches() -> list[pl.DataFrame]:
    """Three machines on different clocks: M2 runs 25 s behind, M3 sends out of order."""
    out = []
    for step in range(12):
        rows = []
        for s in range(step * 5, step * 5 + 5):
            rows += [("M1", "a", s + 0.5, float(s)), ("M1", "b", s + 0.5, 2.0 * s)]
            if s >= 25:
                rows.append(("M2", "a", s - 25 + 0.25, float(s)))
            rows.append(("M3", "a", s + (0.9 if s % 3 == 0 else 0.1), float(-s)))
        if step == 7:
            rows.append(("M3", "a", 12.0, 99.0))  # long after M3's window [10, 20) closed: late
            rows.append(("M1", "a", 37.2, 7.0))  # within M1's lateness: counted
        out.append(readings(rows).with_columns(**CTX))
    return out


@pytest.mark.parametrize("hop_s", [None, 5])
def test_one_aggregator_for_many_machines_equals_one_per_machine(hop_s) -> None:
    hop = timedelta(seconds=hop_s) if hop_s else None
    lateness = timedelta(seconds=3)
    shared = WindowAggregator(timedelta(seconds=10), hop, lateness)
    alone: dict[str, WindowAggregator] = {}
    got, want, late_got, late_want = [], [], [], []
    for batch in _batches():
        features, late = shared.push(batch)
        got += [features] if features is not None else []
        late_got += [late] if late is not None else []
        for (machine,), part in batch.partition_by("machine_id", as_dict=True).items():
            agg = alone.setdefault(machine, WindowAggregator(timedelta(seconds=10), hop, lateness))
            features, late = agg.push(part)
            want += [features] if features is not None else []
            late_want += [late] if late is not None else []
    got += [f] if (f := shared.flush()) is not None else []
    want += [f for a in alone.values() if (f := a.flush()) is not None]
    assert_frame_equal(pl.concat(got).sort(KEY), pl.concat(want).sort(KEY))
    late = pl.concat(late_got)
    assert late["machine_id"].to_list() == ["M3"] and late["value"].to_list() == [99.0]
    assert_frame_equal(late.sort("machine_id", "ts"), pl.concat(late_want).sort("machine_id", "ts"))
    # M2's clock is 25 s behind M1's: its windows close on its own clock, so none of its 35
    # readings is late, and each counts in every window holding it
    m2 = pl.concat(got).filter(pl.col("machine_id") == "M2")
    assert m2["n"].sum() == 35 * (2 if hop_s else 1)


def test_large_frames_are_grouped_a_few_windows_at_a_time_with_the_same_result(
    monkeypatch,
) -> None:
    plant = build_plant(3, start=T0, horizon=timedelta(minutes=3), seed=5)
    data = plant.readings(T0, T0 + timedelta(minutes=2)).with_columns(**CTX)
    whole = window_features(data, timedelta(seconds=10))
    monkeypatch.setattr(windows, "CHUNK_ROWS", 500)  # far fewer readings than one window holds
    chunked = window_features(data, timedelta(seconds=10))
    assert_frame_equal(chunked, whole)
    assert whole.height == chunked.height > 0


def _orders(machines: list[str]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "work_order": [f"WO-{m}" for m in machines],
            "machine_id": machines,
            "product": ["A"] * len(machines),
            "material_lot": ["L"] * len(machines),
            "start": [T0] * len(machines),
            "end": [T0 + timedelta(hours=1)] * len(machines),
        }
    ).with_columns(pl.col("start", "end").dt.cast_time_unit("us"))


def test_one_context_hold_for_many_machines_holds_only_the_machine_without_context() -> None:
    ctx = lambda machines: ErpContext(_orders(machines), pl.DataFrame(schema=SPEC_SCHEMA))  # noqa: E731
    shared = ContextHold(timedelta(seconds=30))
    alone = {m: ContextHold(timedelta(seconds=30)) for m in ("M1", "M2")}
    got, want = [], []
    for step in range(8):
        booked = ["M1"] if step < 4 else ["M1", "M2"]  # M2's order is booked late
        batch = readings(
            [(m, "t", float(s), float(s)) for s in range(step * 5, step * 5 + 5) for m in alone]
        )
        out = shared.push(ctx(booked), batch)
        got += [out] if out is not None else []
        for (machine,), part in batch.partition_by("machine_id", as_dict=True).items():
            out = alone[machine].push(ctx(booked), part)
            want += [out] if out is not None else []
        if step == 2:
            # M1 went on at once; M2 waits for its order, held in time order
            assert shared.held is not None and set(shared.held["machine_id"]) == {"M2"}
    key = ["machine_id", "ts"]
    assert_frame_equal(pl.concat(got).sort(key), pl.concat(want).sort(key))
    assert shared.held is None
    assert set(pl.concat(got).filter(pl.col("machine_id") == "M2")["work_order"]) == {"WO-M2"}
