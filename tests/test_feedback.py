"""People's labels feed back into the rules: false alarms make a rule stricter, confirmed
problems relax it again; each label counts once; labels come from the alert_events table."""

from __future__ import annotations

import duckdb

from floorsight.alerts.engine import MAX_OPEN_AFTER, AlertSettings, MachineAlerting
from floorsight.alerts.feedback import FeedbackStore, Verdict


def _v(i: int, label: str, cause: str = "anomaly") -> Verdict:
    return Verdict(f"E{i}", "M01", cause, label)


def test_false_alarms_tighten_and_true_problems_relax_each_once() -> None:
    m = MachineAlerting(AlertSettings(open_after=2, models={"anomaly": {"threshold": 0.9999}}))
    assert m.apply_feedback([_v(1, "false_alarm")]) == 1
    assert m.trackers["anomaly"].open_after == 3
    assert abs(m.models.models["anomaly"].threshold - 0.99995) < 1e-12
    assert m.apply_feedback([_v(1, "false_alarm")]) == 0  # the same label again: no effect
    assert m.trackers["anomaly"].open_after == 3
    m.apply_feedback([_v(1, "false_alarm"), _v(2, "true_problem")])
    assert m.trackers["anomaly"].open_after == 2
    assert abs(m.models.models["anomaly"].threshold - 0.9999) < 1e-12
    m.apply_feedback([_v(3, "true_problem")])  # never looser than configured
    assert m.trackers["anomaly"].open_after == 2
    assert abs(m.models.models["anomaly"].threshold - 0.9999) < 1e-12
    m.apply_feedback([_v(10 + i, "false_alarm", "sensor") for i in range(20)])
    assert m.trackers["sensor"].open_after == MAX_OPEN_AFTER
    assert m.trackers["anomaly"].open_after == 2  # other causes untouched


def test_feedback_store_reads_labelled_resolutions(tmp_path) -> None:
    db = tmp_path / "f.duckdb"
    store = FeedbackStore(db, every_s=0)
    assert store.for_machine("M01") == []  # no database yet
    con = duckdb.connect(str(db))
    con.execute("CREATE TABLE alerts (alert_id VARCHAR, machine_id VARCHAR, cause VARCHAR)")
    assert store.for_machine("M01") == []  # no alert_events table yet
    con.execute(
        'CREATE TABLE alert_events (event_id VARCHAR, alert_id VARCHAR, "at" TIMESTAMPTZ,'
        " actor VARCHAR, action VARCHAR, comment VARCHAR, label VARCHAR)"
    )
    con.execute("INSERT INTO alerts VALUES ('a1', 'M01', 'anomaly'), ('a2', 'M02', 'drift')")
    con.execute(
        "INSERT INTO alert_events VALUES"
        " ('e1', 'a1', '2026-01-01 10:00+00', 'ana', 'acknowledged', '', NULL),"
        " ('e2', 'a1', '2026-01-01 11:00+00', 'ana', 'resolved', 'valve ok', 'false_alarm'),"
        " ('e3', 'a2', '2026-01-01 11:00+00', 'bo', 'resolved', 'worn tool', 'true_problem')"
    )
    con.close()
    assert store.for_machine("M01") == [Verdict("e2", "M01", "anomaly", "false_alarm")]
    assert store.for_machine("M02") == [Verdict("e3", "M02", "drift", "true_problem")]


def test_false_alarms_halve_the_flagged_share_in_p_also_past_the_score_knee() -> None:
    """Each false alarm halves p (the share of in-control windows flagged), also beyond
    p = 1e-6 where the score leaves 1 - p; as many confirmed problems undo them exactly."""
    from floorsight.models.anomaly import AnomalyModel
    from floorsight.models.evidence import log10_p_of_score

    model = AnomalyModel(threshold=0.9999)
    for k in range(1, 13):
        model.feedback("false_alarm")
        p = 10 ** log10_p_of_score(model.threshold)
        assert abs(p / (1e-4 / 2**k) - 1) < 1e-6, k
        assert model.threshold < 1.0
    for _ in range(12):
        model.feedback("true_problem")
    assert abs(model.threshold - 0.9999) < 1e-12
