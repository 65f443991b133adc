"""OEE from the floor's machine states and part counters (``dashboards/oee.py``), worked out by
hand, and the choice between it and the window-based estimate."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import polars as pl
import pytest

from floorsight.dashboards import oee

T0 = datetime(2026, 1, 5, 6, 0, tzinfo=UTC)
END = T0 + timedelta(hours=2)
TS = pl.Datetime("us", "UTC")


def m(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


ORDERS = pl.DataFrame(
    {
        "machine_id": ["M1", "M1", "M2"],
        "product": ["PA", "PB", "PA"],
        "start": [m(-30), m(60), m(0)],
        "end": [m(50), m(200), m(120)],
    },
    schema_overrides={"start": TS, "end": TS},
)
IDEAL = pl.DataFrame({"product": ["PA", "PB"], "ideal_cycle_time_s": [40.0, 20.0]})


def spans(*rows: tuple[str, float, float, str]) -> pl.DataFrame:
    return pl.DataFrame(
        [{"machine_id": mid, "since": m(a), "until": m(b), "category": c} for mid, a, b, c in rows],
        schema={"machine_id": pl.String, "since": TS, "until": TS, "category": pl.String},
    )


def counts(*rows: tuple[str, str, float, int]) -> pl.DataFrame:
    return pl.DataFrame(
        [{"machine_id": mid, "signal": s, "ts": m(t), "parts": n} for mid, s, t, n in rows],
        schema={"machine_id": pl.String, "signal": pl.String, "ts": TS, "parts": pl.Int64},
    )


def test_availability_performance_and_quality_from_states_and_counts() -> None:
    states = spans(
        ("M1", -60, 10, "running"),  # running since before the shift
        ("M1", 10, 20, "down"),
        ("M1", 20, 45, "running"),
        ("M1", 45, 50, "setup"),
        ("M1", 50, 60, "idle"),  # between the orders: not planned, not counted
        ("M1", 60, 70, "planned_stop"),
        ("M1", 70, 120, "running"),
    )
    made = counts(
        ("M1", "good_count", 5, 10),  # PA, 40 s each
        ("M1", "good_count", 40, 30),
        ("M1", "scrap_count", 41, 2),
        ("M1", "good_count", 55, 3),  # between orders: no product, in quality only
        ("M1", "good_count", 100, 120),  # PB, 20 s each
        ("M1", "scrap_count", 110, 5),
        ("M1", "good_count", 130, 99),  # after the shift
    )
    got = oee.oee_from_signals(ORDERS, states, made, {"M1"}, IDEAL, T0, END).row(0, named=True)
    # scheduled: PA 06:00-06:50 (3000 s) + PB 07:00-08:00 (3600 s); planned stop 07:00-07:10
    assert got["planned_s"] == 6600 - 600
    # running inside the orders: 0-10, 20-45 and 70-120 minutes
    assert got["run_s"] == (10 + 25 + 50) * 60
    assert got["availability"] == pytest.approx(5100 / 6000)
    # (10 + 30 + 2) PA parts × 40 s + (120 + 5) PB parts × 20 s
    assert got["ideal_s"] == 42 * 40 + 125 * 20
    assert got["performance"] == pytest.approx((42 * 40 + 125 * 20) / 5100)
    assert (got["good"], got["scrap"]) == (163, 7)
    assert got["quality"] == pytest.approx(163 / 170)
    assert got["has_states"] and got["has_counts"]


def test_a_counter_that_counted_nothing_says_no_parts_and_offline_is_no_state() -> None:
    states = spans(("M2", -10, 120, "offline"))
    got = oee.oee_from_signals(ORDERS, states, counts(), {"M2"}, IDEAL, T0, END)
    row = got.filter(pl.col("machine_id") == "M2").row(0, named=True)
    assert not row["has_states"] and row["has_counts"]
    assert row["run_s"] == 0.0 and row["quality"] is None and row["performance"] is None


def test_each_machine_takes_the_basis_it_has() -> None:
    windows = pl.DataFrame(
        {
            "machine_id": ["M1", "M2", "M3"],
            "planned_s": [6000.0, 7200.0, 7200.0],
            "run_s": [3000.0, 3600.0, 7200.0],
            "availability": [0.5, 0.5, 1.0],
            "performance": [0.9, 0.8, None],
            "quality": [1.0, 0.9, 0.95],
            "oee": [0.45, 0.36, None],
        },
        schema=oee.OEE_SCHEMA,
    )
    signals = oee.oee_from_signals(
        ORDERS,
        spans(("M1", -60, 120, "running")),
        counts(("M2", "good_count", 30, 90), ("M2", "scrap_count", 31, 10)),
        {"M2"},
        IDEAL,
        T0,
        END,
    )
    rows = {r["machine_id"]: r for r in oee.shift_oee(windows, signals).iter_rows(named=True)}
    assert {k: r["basis"] for k, r in rows.items()} == {
        "M1": "states",
        "M2": "counts",
        "M3": "windows",
    }
    # M1: running the whole of its planned 6600 s (capped at 1); the windows' P and Q
    assert rows["M1"]["availability"] == 1.0
    assert (rows["M1"]["performance"], rows["M1"]["quality"]) == (0.9, 1.0)
    # M2: the windows' availability and run time, counted parts: 100 × 40 s / 3600 s
    assert rows["M2"]["availability"] == 0.5
    assert rows["M2"]["performance"] == pytest.approx(4000 / 3600)
    assert rows["M2"]["quality"] == pytest.approx(0.9)
    assert rows["M2"]["oee"] == pytest.approx(0.5 * 4000 / 3600 * 0.9)
    assert rows["M3"] == {**windows.row(2, named=True), "basis": "windows"}


@pytest.mark.parametrize(
    ("state", "category", "label"),
    [
        ("Execute", "running", "running (Execute)"),
        ("running", "running", "running"),
        ("Planned Stop", "planned_stop", "planned_stop"),
        ("Aborted", "down", "down (Aborted)"),
    ],
)
def test_state_labels(state, category, label) -> None:
    assert oee.state_label(state, category) == label


def test_the_erp_context_tells_why_a_machine_stands() -> None:
    assert oee.floor_state("Stopped", "idle", True, None) == "setup (Stopped)"
    assert oee.floor_state("Aborted", "down", False, "repair") == "down (repair: Aborted)"
    assert oee.floor_state("Stopped", "idle", False, "planned_maintenance") == (
        "down (planned maintenance: Stopped)"
    )
    # a machine that runs is running, whatever the plan says
    assert oee.floor_state("Execute", "running", True, "repair") == "running (Execute)"
    assert oee.floor_state("offline", "offline", True, None) == "offline"
