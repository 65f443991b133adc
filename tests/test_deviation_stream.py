"""Deviation prediction in the stream: an alert before the lab, the lab's verdict against it."""

from __future__ import annotations

import json
import math
import pickle
import random
from datetime import UTC, datetime, timedelta

import pytest

from floorsight.models.base import Context, LabResult
from floorsight.models.deviation import DeviationPredictor
from floorsight.models.deviation_monitor import DEVIATION_CHECKS, DeviationModel
from floorsight.models.machine import Segment

T0 = datetime(2026, 3, 2, 6, tzinfo=UTC)
WINDOW = timedelta(seconds=60)
SPECS = {("P", "bore"): (24.98, 25.0, 25.02)}
LAB_DELAY = timedelta(hours=3)


def _plant(windows: int = 1100, wear_from: int = 700, seed: int = 3):
    """A machine whose bore follows its spindle current (0.025 mm per A), with tool wear from
    window ``wear_from`` on (current and bore rise together until the bore leaves its spec), an
    in-line gauge of the bore, and a lab result of the part made in the middle of every window,
    known 3 hours later."""
    rng = random.Random(seed)
    segments, labs = [], []
    for w in range(windows):
        wear = max(0, w - wear_from) * 0.01
        current = 11.5 + rng.gauss(0, 0.2) + wear
        bore = 25.0 + 0.025 * (current - 11.5) + rng.gauss(0, 0.001)
        start = T0 + w * WINDOW
        key = ("M1", start, start + WINDOW, "WO-1", "P", "L1")
        rows = {
            "spindle_current_a": {"mean": current},
            "spindle_temp_c": {"mean": 42.0 + rng.gauss(0, 0.1)},
            "bore": {"mean": bore + rng.gauss(0, 0.002)},  # the in-line gauge: noisier
        }
        segments.append(Segment(key, rows))
        made = start + WINDOW / 2
        labs.append(LabResult(f"S{w}", "bore", made, made + LAB_DELAY, bore))
    return segments, labs


def _run(model: DeviationModel, segments, labs, batch: int = 60):
    scores, checks = [], []
    context = Context(machine_id="M1", specs=SPECS, labs=labs)
    for i in range(0, len(segments), batch):
        out = model.score_segments(segments[i : i + batch], context)
        scores += out.scores
        checks += out.tables.get(DEVIATION_CHECKS.name, [])
    return scores, checks


@pytest.mark.parametrize("inline_gauge", [True, False], ids=["with gauge", "process only"])
def test_tool_wear_is_alerted_hours_before_the_lab_reports_it_out_of_spec(
    inline_gauge: bool,
) -> None:
    segments, labs = _plant()
    scores, checks = _run(DeviationModel(inline_gauge=inline_gauge), segments, labs)
    first = next(r for r in scores if r["is_anomaly"])
    lab_out = [lab for lab in labs if not 24.98 <= lab.value <= 25.02]
    first_lab_out = min(lab.available_at for lab in lab_out)
    # the alert comes when the window closes; the lab says so hours later
    assert first_lab_out - first["window_end"] > timedelta(hours=2.5)
    evidence = json.loads(first["evidence"])["bore"]
    assert evidence["predicted"] > evidence["low"] > 25.02  # the whole interval beyond USL
    assert evidence["high"] > evidence["predicted"]
    assert (evidence["lsl"], evidence["usl"]) == (24.98, 25.02)
    assert "outside spec [24.98, 25.02]" in evidence["note"]
    # nothing flagged before the wear
    assert not any(r["is_anomaly"] for r in scores if r["window_start"] < T0 + 700 * WINDOW)
    verdicts = [c for c in checks if c["predicted_out"]]
    assert verdicts and all(c["lab_out"] for c in verdicts)  # every alert the lab confirmed


def test_the_labs_verdict_is_written_against_the_prediction_once_it_arrives() -> None:
    segments, labs = _plant()
    model = DeviationModel()
    flagged_at = None
    for i, seg in enumerate(segments):
        out = model.score_segments([seg], Context("M1", SPECS, labs))
        rows = out.tables.get("deviation_checks", [])
        for row in rows:
            assert row["available_at"] <= seg.end  # never a verdict from the future
        if flagged_at is None and out.scores and out.scores[0]["is_anomaly"]:
            flagged_at, flagged = i, out.scores[0]
        if flagged_at is not None:
            mine = [r for r in rows if r["window_start"] == flagged["window_start"]]
            if mine:
                break
    assert flagged_at is not None
    (row,) = mine
    evidence = json.loads(flagged["evidence"])["bore"]
    lab = labs[flagged_at]
    assert row == {
        "machine_id": "M1",
        "characteristic": "bore",
        "sample_id": lab.sample_id,
        "part_made_at": lab.part_made_at,
        "window_start": flagged["window_start"],
        "predicted": evidence["predicted"],
        "low": evidence["low"],
        "high": evidence["high"],
        "lsl": 24.98,
        "usl": 25.02,
        "predicted_out": True,
        "lab_value": lab.value,
        "lab_out": lab.value > 25.02,
        "available_at": lab.available_at,
        "hours_ahead": pytest.approx(3.0 - 0.5 / 60),  # the window closes 30 s after the part
    }
    assert set(row) == set(DEVIATION_CHECKS.columns)
    assert i == flagged_at + 180  # the window in which the lab result became known


def test_a_replay_from_a_snapshot_writes_the_same_rows_and_batches_do_not_matter() -> None:
    segments, labs = _plant()
    whole = _run(DeviationModel(), segments, labs, batch=len(segments))
    assert whole == _run(DeviationModel(), segments, labs, batch=7)
    model = DeviationModel()
    first = _run(model, segments[:750], labs)
    snapshot = pickle.dumps(model)
    rest = _run(model, segments[750:], labs)
    # recovery: the snapshot goes on with the same segments (a new list of the same labs)
    replayed = _run(pickle.loads(snapshot), segments[750:], list(labs))
    assert replayed == rest
    assert (first[0] + rest[0], first[1] + rest[1]) == whole
    keys = [(c["machine_id"], c["sample_id"], c["characteristic"]) for c in whole[1]]
    assert len(keys) == len(set(keys))  # one verdict per lab result: the table's key


def test_a_machine_predicts_from_its_tenth_lab_result_with_an_honest_interval() -> None:
    segments, labs = _plant(windows=400, wear_from=10_000)
    scores, _ = _run(DeviationModel(), segments, labs)
    predicted = [r for r in scores if r["evidence"]]
    # the 10th lab result (window 9) is known 180 windows after its part was made
    assert predicted[0]["window_start"] == T0 + 189 * WINDOW
    widths = [json.loads(r["evidence"])["bore"] for r in predicted]
    early, late = widths[0], widths[-1]
    assert early["high"] - early["low"] > late["high"] - late["low"]
    old, _ = _run(DeviationModel(min_labels=30), segments, labs)
    assert next(r for r in old if r["evidence"])["window_start"] == T0 + 209 * WINDOW


def test_the_conformal_interval_is_unbounded_until_there_are_residuals_enough() -> None:
    p = DeviationPredictor(min_labels=1)
    for i in range(9):  # 8 residuals: the 90 % rank ceil(0.9 * 9) = 9 does not exist yet
        p.learn({"a": float(i)}, float(i))
    assert math.isinf(p.predict_only({"a": 1.0}, 0, 10).high)
    p.learn({"a": 3.0}, 3.0)
    assert math.isfinite(p.predict_only({"a": 1.0}, 0, 10).high)


def test_an_unbounded_interval_never_alerts() -> None:
    segments, labs = _plant(windows=400, wear_from=10_000)
    # a prediction far out of spec from the second label on, with no residuals to bound it
    far = [
        Segment(s.key, {**s.rows, "spindle_current_a": {"mean": 30.0}}) if i > 185 else s
        for i, s in enumerate(segments)
    ]
    scores, _ = _run(DeviationModel(min_labels=2), far, labs)
    ready = [json.loads(r["evidence"])["bore"] for r in scores if r["evidence"]]
    assert ready and ready[0]["low"] is None and ready[0]["high"] is None
    unbounded = [
        r for r in scores if r["evidence"] and json.loads(r["evidence"])["bore"]["low"] is None
    ]
    assert unbounded and not any(r["is_anomaly"] for r in unbounded)


def test_windows_waiting_for_a_label_are_forgotten_after_max_label_delay() -> None:
    segments, labs = _plant(windows=900, wear_from=10_000)
    model = DeviationModel(max_label_delay=timedelta(hours=2))
    _run(model, segments, [])  # no lab result ever arrives
    assert len(model._waiting) == len(model._starts) <= 121
    # lab results of 3 hours ago arrive: their windows are gone, nothing is learned or checked
    _, checks = _run(model, segments[-1:], labs)
    assert checks == [] and model._predictors[("P", "bore")].labels == 0


def test_alert_on_is_interval_or_value() -> None:
    with pytest.raises(ValueError, match="alert_on"):
        DeviationModel(alert_on="maybe")


def test_a_window_with_a_faulty_measurement_is_checked_but_neither_flags_nor_teaches() -> None:
    segments, labs = _plant()
    quarantine = {seg.start for seg in segments[750:]}  # sensor health: faulty from the wear on
    model = DeviationModel()
    out = model.score_segments(segments, Context("M1", SPECS, labs, quarantine=quarantine))
    assert not any(r["is_anomaly"] for r in out.scores)
    checks = out.tables["deviation_checks"]
    assert any(c["window_start"] in quarantine for c in checks)  # the lab's verdict still counts
    # learned: the parts of windows 0..749; those of 750..919 (known by the end) are not
    assert model._predictors[("P", "bore")].labels == 750


def test_without_the_inline_gauge_the_characteristic_is_predicted_from_the_other_sensors() -> None:
    segments, labs = _plant(windows=600, wear_from=10_000)
    # the gauge reads far out of spec from window 500 on while the process stays as it was
    gauge_off = [
        Segment(seg.key, {**seg.rows, "bore": {"mean": 25.2}}) if i >= 500 else seg
        for i, seg in enumerate(segments)
    ]
    flags = {}
    for inline_gauge in (True, False):
        scores, _ = _run(DeviationModel(inline_gauge=inline_gauge), gauge_off, labs)
        flags[inline_gauge] = sum(r["is_anomaly"] for r in scores)
    assert flags[True] > 50 and flags[False] == 0
