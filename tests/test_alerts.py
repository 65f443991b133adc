"""Alert rules: one alert per fault, updated while it lasts; stray windows raise nothing."""

from __future__ import annotations

from datetime import timedelta

import polars as pl

from floorsight.alerts import AlertTracker
from floorsight.models import SCORE_SCHEMA
from tests.conftest import T0


def _scores(flags: str) -> pl.DataFrame:
    """Score rows for one machine from a string like '..xx.x' (x = anomalous window)."""
    return pl.DataFrame(
        [
            {
                "machine_id": "M1",
                "window_start": T0 + timedelta(seconds=10 * i),
                "window_end": T0 + timedelta(seconds=10 * (i + 1)),
                "work_order": "WO-1",
                "product": "P",
                "material_lot": "L",
                "model": "z",
                "score": 0.99999 if c == "x" else 0.5,
                "is_anomaly": c == "x",
                "evidence": "vibration.mean z=9" if c == "x" else "",
            }
            for i, c in enumerate(flags)
        ],
        schema=SCORE_SCHEMA,
    )


def test_stray_anomalous_windows_raise_nothing() -> None:
    assert AlertTracker(open_after=2).update(_scores("..x..x..x.")) is None


def test_long_fault_gives_one_alert_updated_while_it_lasts() -> None:
    tracker = AlertTracker(open_after=2, clear_after=3, critical_after=6)
    out = tracker.update(_scores("...xxxxxxxx.x...."))
    assert out.height == 1
    alert = out.row(0, named=True)
    assert alert["first_seen"] == T0 + timedelta(seconds=30)
    assert alert["raised_at"] == T0 + timedelta(seconds=50)
    # one normal window inside the fault does not clear it (hysteresis): 9 anomalous windows
    assert alert["windows"] == 9
    assert alert["severity"] == "critical"
    assert alert["cleared_at"] == T0 + timedelta(seconds=160)
    assert alert["work_order"] == "WO-1"


def test_replaying_scores_gives_the_same_alert_id() -> None:
    a = AlertTracker().update(_scores("..xxx"))
    b = AlertTracker().update(_scores("..xxx"))
    assert a["alert_id"].to_list() == b["alert_id"].to_list()


def test_alert_state_carries_across_batches() -> None:
    tracker = AlertTracker(open_after=2)
    first = tracker.update(_scores("..x"))
    assert first is None
    second = tracker.update(_scores("..xx").slice(3))
    assert second.height == 1 and second["windows"][0] == 2
