"""Failure prediction with known answers: an index of several sensors, RUL in hours, labels."""

from __future__ import annotations

import json
import math
import random
from datetime import UTC, datetime, timedelta

import pytest

from floorsight.models.base import Context, Maintenance
from floorsight.models.failure import MachineFailureModel
from floorsight.models.machine import Segment

T0 = datetime(2026, 1, 1, tzinfo=UTC)
NOISE = {"vibration_mm_s": 0.03, "spindle_temp_c": 0.2, "spindle_current_a": 0.05}
LEVEL = {"vibration_mm_s": 1.8, "spindle_temp_c": 42.0, "spindle_current_a": 11.5}
BORE = "bore_diameter_mm"


def windows(start: int, count: int, shift, seed: int = 1, product: str = "P-100") -> list:
    """10 s windows from window ``start``; ``shift(i)`` -> sensor -> added to its level."""
    rng = random.Random(seed + start)
    out = []
    for i in range(start, start + count):
        at = T0 + timedelta(seconds=10 * i)
        key = ("M1", at, at + timedelta(seconds=10), "WO-1", product, "L-1")
        add = shift(i)
        rows = {s: {"mean": LEVEL[s] + rng.gauss(0, NOISE[s]) + add.get(s, 0.0)} for s in LEVEL}
        rows[BORE] = {"mean": 25.0 + rng.gauss(0, 0.001) + add.get(BORE, 0.0)}
        out.append(Segment(key, rows))
    return out


SPECS = Context(specs={("P-100", BORE): (24.98, 25.0, 25.02)})


def healthy(model: MachineFailureModel, n: int = 720) -> list[dict]:
    return model.score_segments(windows(0, n, lambda i: {}), SPECS).scores


def health(row: dict) -> float:
    return json.loads(row["evidence"])["health"]


def test_index_rises_on_wear_of_several_sensors_not_on_one_sensors_offset() -> None:
    wear = MachineFailureModel(baseline_windows=360)
    offset = MachineFailureModel(baseline_windows=360)
    assert not any(r["is_anomaly"] for r in healthy(wear) + healthy(offset))
    # bearing wear: vibration and spindle temperature rise together, 20 sigma after 20 min
    rising = wear.score_segments(
        windows(
            720,
            120,
            lambda i: {"vibration_mm_s": 0.005 * (i - 720), "spindle_temp_c": 0.033 * (i - 720)},
        ),
        SPECS,
    ).scores
    assert health(rising[-1]) > 10 and rising[-1]["is_anomaly"]
    top = {s for s, _ in json.loads(rising[-1]["evidence"])["sensors"][:2]}
    assert top == {"vibration_mm_s", "spindle_temp_c"}
    # a calibration offset of 20 sigma on one sensor, and a bore far off (the part, not the
    # machine: a characteristic with spec limits is not a condition sensor)
    shifted = offset.score_segments(
        windows(720, 120, lambda i: {"vibration_mm_s": 0.6, BORE: 0.05}), SPECS
    ).scores
    assert max(health(r) for r in shifted) < 2 and not any(r["is_anomaly"] for r in shifted)
    assert json.loads(shifted[-1]["evidence"])["sensors"][0][0] == "vibration_mm_s"


def test_rul_interval_contains_the_truth_of_a_linear_degradation() -> None:
    # both condition sensors rise by one baseline sigma per 10 minutes (60 windows)
    model = MachineFailureModel(baseline_windows=360, h_fail=30.0, half_life=5.0)
    healthy(model)
    per_window = 1 / 60
    last = model.score_segments(
        windows(720, 720, lambda i: {s: NOISE[s] * per_window * (i - 720) for s in NOISE}),
        SPECS,
    ).scores[-1]
    e = json.loads(last["evidence"])
    # index about 12 after 2 h, rising 6 an hour: 30 is reached in about 3 h
    truth = (30.0 - e["health"]) / 6.0
    assert e["rul_hours"] == pytest.approx(truth, rel=0.15)
    assert e["rul_low_h"] <= truth <= e["rul_high_h"]
    assert e["rul_low_h"] < e["rul_hours"] < e["rul_high_h"]


def test_a_failure_resets_and_teaches_the_failure_index() -> None:
    model = MachineFailureModel(baseline_windows=360, h_fail=30.0)
    healthy(model)
    worn = model.score_segments(
        windows(720, 240, lambda i: {s: 0.2 * NOISE[s] * (i - 720) / 6 for s in NOISE}), SPECS
    ).scores
    at_failure = health(worn[-1])
    assert at_failure > 5
    model.maintenance(Maintenance("tool_change", worn[-1]["window_end"], worn[-1]["window_end"]))
    assert model.metrics()["failure_risk.failures"] == 0  # only a failure is the label
    failed_at = worn[-1]["window_end"]
    model.maintenance(Maintenance("failure", failed_at, failed_at))
    assert model.metrics() == {
        "failure_risk.h_fail": pytest.approx((30.0 + at_failure) / 2, abs=0.01),  # prior: once
        "failure_risk.failures": 1.0,
    }
    # after the repair the machine is healthy again against the product's kept baseline
    after = model.score_segments(windows(1400, 60, lambda i: {}), SPECS).scores
    assert len(after) == 60 and health(after[-1]) < 2 and not after[-1]["is_anomaly"]


def test_quarantined_windows_teach_nothing_and_products_keep_their_baselines() -> None:
    model = MachineFailureModel(baseline_windows=360)
    bad = windows(0, 30, lambda i: {s: 50 * NOISE[s] for s in NOISE})
    quarantine = Context(specs=SPECS.specs, quarantine={seg.start for seg in bad})
    assert model.score_segments(bad, quarantine).scores == []  # no baseline yet: no verdict
    healthy(model)
    # another product runs at other levels: its own baseline, not an alarm
    other = windows(720, 720, lambda i: {s: 30 * NOISE[s] for s in NOISE}, product="P-200")
    rows = model.score_segments(other, SPECS).scores
    # the 360th window completes the baseline and is the first scored
    assert len(rows) == 361 and not any(r["is_anomaly"] for r in rows)
    spiky = windows(1440, 40, lambda i: {s: 50 * NOISE[s] for s in NOISE})
    held = Context(specs=SPECS.specs, quarantine={seg.start for seg in spiky})
    rows = model.score_segments(spiky, held).scores
    assert max(health(r) for r in rows) < 2


def test_two_sensors_wandering_together_are_not_an_alarm() -> None:
    """Slow wander: spindle temperature and current on a 2 h cycle, four times their noise.
    The product ran twice at the top of the cycle (its orders alternate with another's), so
    its hour of baseline sees a spread too narrow for the rest of the cycle; the spread
    learned on while healthy comes to hold it."""

    def wander(i: int) -> dict:
        phase = 2 * math.pi * i / 720
        return {
            "spindle_temp_c": 4 * NOISE["spindle_temp_c"] * math.sin(phase),
            "spindle_current_a": 4 * NOISE["spindle_current_a"] * math.sin(phase + 0.3),
        }

    day = windows(90, 180, wander) + windows(810, 180, wander) + windows(1440, 8640, wander)
    fixed = MachineFailureModel(baseline_windows=360, baseline_half_life=0)
    assert any(r["is_anomaly"] for r in fixed.score_segments(day, SPECS).scores)
    model = MachineFailureModel(baseline_windows=360)
    assert not any(r["is_anomaly"] for r in model.score_segments(day, SPECS).scores)
    # bearing wear after the wandering day still rises through the learned spread
    worn = model.score_segments(
        windows(
            10080,
            240,
            lambda i: {
                "vibration_mm_s": 0.005 * (i - 10080),
                "spindle_temp_c": 0.033 * (i - 10080) + wander(i)["spindle_temp_c"],
            },
        ),
        SPECS,
    ).scores
    assert worn[-1]["is_anomaly"]
