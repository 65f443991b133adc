"""Alert hygiene: a flapping fault stays one alert, one fault's alerts of every cause are one
incident, and alerts raised in planned maintenance or a setup page nobody."""

from __future__ import annotations

import pickle
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import polars as pl
import pytest

from floorsight.alerts.hygiene import AlertHygiene, AlertHygieneError, load_alert_hygiene
from floorsight.alerts.incidents import INCIDENT_SCHEMA, IncidentTracker
from floorsight.alerts.mute import MuteSettings, MuteWindows
from floorsight.alerts.routing import default_routing
from floorsight.alerts.rules import ALERT_SCHEMA, AlertTracker
from floorsight.alerts.tables import INCIDENTS
from floorsight.models.base import Maintenance
from tests.conftest import T0
from tests.test_alerts import _scores

WINDOW = timedelta(seconds=10)
HOLD = timedelta(minutes=10)


def _rows(flags: str, start=T0, severity: str | None = None) -> list[dict]:
    """Score rows of machine M1 from a string like '..xx.x' (x = flagged window), from start,
    each naming ``severity``."""
    shift = start - T0
    return [
        {
            **r,
            "window_start": r["window_start"] + shift,
            "window_end": r["window_end"] + shift,
            "severity": severity,
        }
        for r in _scores(flags).to_dicts()
    ]


def _alerts(tracker: AlertTracker, rows: list[dict], batch: int | None = None) -> dict[str, dict]:
    """alert_id -> the alert's last row, feeding ``rows`` in batches of ``batch``."""
    batch = batch or len(rows)
    out: dict[str, dict] = {}
    for i in range(0, len(rows), batch):
        out |= {a["alert_id"]: a for a in tracker.update_rows(rows[i : i + batch])}
    return out


# ------------------------------------------------------------------------------------------
# flap suppression and severity


def test_a_fault_that_flaps_within_the_hold_is_one_alert() -> None:
    rows = _rows("xxxxx...xxxxx...")
    without = _alerts(AlertTracker(hold=timedelta(0)), rows)
    held = _alerts(AlertTracker(hold=HOLD), rows)
    assert len(without) == 2
    assert len(held) == 1
    (alert,) = held.values()
    assert alert["alert_id"] == "M1:anomaly:20260105T060000Z"
    assert alert["first_seen"] == T0
    assert alert["windows"] == 10
    assert alert["last_seen"] == T0 + 13 * WINDOW
    assert alert["cleared_at"] == T0 + 16 * WINDOW
    assert "cleared and flagged again within 10 min: once" in alert["reason"]


def test_a_reopened_alert_is_open_again_until_it_clears() -> None:
    tracker = AlertTracker(hold=HOLD)
    (cleared,) = tracker.update_rows(_rows("xxxxx..."))
    assert cleared["cleared_at"] is not None
    (reopened,) = tracker.update_rows(_rows("xx", T0 + 8 * WINDOW))
    assert reopened["alert_id"] == cleared["alert_id"]
    assert reopened["cleared_at"] is None
    assert reopened["last_seen"] == T0 + 10 * WINDOW
    assert reopened["windows"] == 7


def test_every_clear_is_news_however_the_windows_are_batched() -> None:
    """A clear that a reopen within the hold overwrites in the same batch is still returned, so
    the notifications (events per row) are the same in one batch or window by window."""
    from floorsight.alerts.notify import _key as notification_key
    from floorsight.alerts.notify import events

    rows = _rows("xx" + "." * 4 + "xx" + "." * 4 + "xx" + "." * 4)

    def keys(batch: int) -> set[str]:
        tracker, out = AlertTracker(hold=HOLD), set()
        for k in range(0, len(rows), batch):
            for alert in tracker.update_rows(rows[k : k + batch]):
                out |= {notification_key(alert, e) for e in events(alert)}
        return out

    one_by_one = keys(1)
    assert sum("/cleared/" in key for key in one_by_one) == 3
    for batch in (2, 5, len(rows)):
        assert keys(batch) == one_by_one, batch


def test_a_fault_after_the_hold_is_a_new_alert() -> None:
    rows = _rows("xxxxx...") + _rows("xxxxx...", T0 + 8 * WINDOW + HOLD + WINDOW)
    assert len(_alerts(AlertTracker(hold=HOLD), rows)) == 2


def test_the_default_hold_suppresses_flaps() -> None:
    assert AlertTracker().hold == HOLD
    assert len(_alerts(AlertTracker(), _rows("xxxxx...xxxxx..."))) == 1


def test_the_alert_takes_the_highest_severity_its_model_names() -> None:
    rows = _rows("xxx", severity="info") + _rows("x", T0 + 3 * WINDOW, severity="critical")
    assert _alerts(AlertTracker(), rows[:2])["M1:anomaly:20260105T060000Z"]["severity"] == "info"
    tracker = AlertTracker()
    severities = [a["severity"] for r in rows for a in tracker.update_rows([r])]
    assert severities == ["info", "info", "critical"]
    # a row naming none counts as warning; lasting critical_after windows makes it critical
    tracker = AlertTracker(critical_after=4)
    severities = [a["severity"] for r in _rows("xxxx") for a in tracker.update_rows([r])]
    assert severities == ["warning", "warning", "critical"]


def test_flap_suppression_is_deterministic_and_batch_split_invariant() -> None:
    rows = _rows("..xxxx..x...xxx...x.xx....xxxxx........" * 6)
    whole = _alerts(AlertTracker(hold=timedelta(minutes=1)), rows)
    assert whole == _alerts(AlertTracker(hold=timedelta(minutes=1)), rows)
    for batch in (1, 3, 7):
        assert _alerts(AlertTracker(hold=timedelta(minutes=1)), rows, batch) == whole
    # a pickle round trip mid-stream continues identically
    tracker = AlertTracker(hold=timedelta(minutes=1))
    first = _alerts(tracker, rows[:50])
    resumed = pickle.loads(pickle.dumps(tracker))
    assert first | _alerts(resumed, rows[50:]) == whole


def test_alert_rows_fit_the_alerts_table() -> None:
    rows = list(_alerts(AlertTracker(), _rows("xxxxx...xxxxx...")).values())
    assert pl.DataFrame(rows, schema=ALERT_SCHEMA).height == 1


# ------------------------------------------------------------------------------------------
# incidents


def _fault(start, causes=("anomaly", "sensor")) -> list[dict]:
    """Alert rows of one spiking-sensor fault: both causes flap over ~3 minutes."""
    rows = []
    for k, cause in enumerate(causes):
        tracker = AlertTracker(cause=cause, hold=timedelta(0))
        flags = "." * k + "xxxx...xxx....xxxxx...." + "x" * 3 + "...."
        rows += tracker.update_rows(_rows(flags, start))
    return rows


def test_the_alerts_of_one_fault_across_causes_are_one_incident() -> None:
    alerts = _fault(T0)
    assert len(alerts) == 8  # 4 alerts of each cause without a hold
    (incident,) = IncidentTracker().update(alerts)
    assert incident["causes"] == "anomaly,sensor"
    assert incident["alerts"] == 8
    ids = incident["alert_ids"].split(",")
    assert sorted(ids) == sorted(a["alert_id"] for a in alerts)
    assert incident["incident_id"] == "M1:incident:20260105T060000Z"
    assert incident["first_seen"] == T0
    assert incident["closed_at"] == max(a["cleared_at"] for a in alerts)
    assert incident["windows"] == sum(a["windows"] for a in alerts)
    assert pl.DataFrame([incident], schema=INCIDENT_SCHEMA).columns == INCIDENTS.columns


def test_two_faults_an_hour_apart_are_two_incidents() -> None:
    incidents = IncidentTracker()
    first = incidents.update(_fault(T0))
    second = incidents.update(_fault(T0 + timedelta(hours=1), causes=("failure_risk",)))
    assert [i["incident_id"] for i in first + second] == [
        "M1:incident:20260105T060000Z",
        "M1:incident:20260105T070000Z",
    ]
    assert second[0]["causes"] == "failure_risk"


def test_an_alert_within_the_gap_reopens_a_closed_incident() -> None:
    incidents = IncidentTracker(gap=timedelta(minutes=15))
    (closed,) = incidents.update(_fault(T0, causes=("sensor",)))
    assert closed["closed_at"] is not None
    tracker = AlertTracker(cause="anomaly")
    (opened,) = incidents.update(tracker.update_rows(_rows("xx", T0 + timedelta(minutes=10))))
    assert opened["incident_id"] == closed["incident_id"]
    assert opened["closed_at"] is None
    assert opened["causes"] == "anomaly,sensor"


def test_an_open_alert_holds_its_incident_open_however_long() -> None:
    incidents = IncidentTracker(gap=timedelta(minutes=1))
    (long_alert,) = AlertTracker(cause="order_offset").update_rows(_rows("xx"))
    incidents.update([long_alert])
    later = AlertTracker(cause="anomaly").update_rows(_rows("xx", T0 + timedelta(hours=2)))
    (incident,) = incidents.update(later)
    assert incident["causes"] == "anomaly,order_offset"


def test_incidents_are_deterministic_and_idempotent_under_replay() -> None:
    alerts = _fault(T0) + _fault(T0 + timedelta(hours=1))
    once = IncidentTracker().update(alerts)
    assert IncidentTracker().update(list(reversed(alerts))) == once
    incidents = IncidentTracker()
    incidents.update(alerts)
    # at-least-once: the same alert rows again rewrite the same incident rows
    assert incidents.update(alerts) == once
    # a pickle round trip continues identically
    assert pickle.loads(pickle.dumps(incidents)).update(alerts[:3]) == incidents.update(alerts[:3])


def test_incidents_are_the_same_however_the_windows_are_batched() -> None:
    calm = "." * 100  # 1000 s: longer than the gap after the clear
    flags = {
        "anomaly": ("..xxxx..x...xxx......xx" * 4 + calm) * 3,
        "sensor": (".xxx..xx....xxxxx...x.." * 4 + calm) * 3,
    }

    def run(batch: int) -> dict[str, dict]:
        trackers = {c: AlertTracker(cause=c) for c in flags}
        incidents = IncidentTracker(gap=timedelta(minutes=15))
        rows = {c: _rows(f) for c, f in flags.items()}
        out: dict[str, dict] = {}
        for i in range(0, len(rows["anomaly"]), batch):
            changed = [
                a for c, t in trackers.items() for a in t.update_rows(rows[c][i : i + batch])
            ]
            out |= {r["incident_id"]: r for r in incidents.update(changed)}
        return out

    whole = run(10_000)
    assert [i["causes"] for i in whole.values()] == ["anomaly,sensor"] * 3
    for batch in (1, 5, 13):
        assert run(batch) == whole


def test_replayed_incident_rows_rewrite_one_row_in_duckdb() -> None:
    rows = IncidentTracker().update(_fault(T0))
    frame = pl.DataFrame(rows, schema=INCIDENT_SCHEMA)
    con = duckdb.connect()
    con.execute(INCIDENTS.ddl)
    for _ in range(2):
        con.register("batch", frame)
        con.execute(INCIDENTS.upsert_sql("batch"))
        con.unregister("batch")
    assert con.execute("SELECT count(*), min(causes) FROM incidents").fetchone() == (
        1,
        "anomaly,sensor",
    )


# ------------------------------------------------------------------------------------------
# muting


def _alert(cause="anomaly", raised_min=5.0, last_min=6.0, severity="warning") -> dict:
    return {
        "alert_id": f"M1:{cause}:x",
        "machine_id": "M1",
        "cause": cause,
        "severity": severity,
        "reason": "M1: something",
        "first_seen": T0 + timedelta(minutes=raised_min) - 2 * WINDOW,
        "raised_at": T0 + timedelta(minutes=raised_min),
        "last_seen": T0 + timedelta(minutes=last_min),
    }


def _maintenance(kind="planned_maintenance", minutes=40) -> list[Maintenance]:
    return [Maintenance(kind, T0, T0 + timedelta(minutes=minutes))]


def _setup_states() -> list[dict]:
    """A setup from 06:00 to 06:25, then production."""
    return [
        {"machine_id": "M1", "since": T0, "state": "Setup", "category": "setup"},
        {
            "machine_id": "M1",
            "since": T0 + timedelta(minutes=25),
            "state": "Execute",
            "category": "running",
        },
    ]


def test_an_alert_raised_in_planned_maintenance_is_muted_with_the_reason() -> None:
    windows = MuteWindows()
    windows.add_maintenance(_maintenance())
    alert = _alert()
    muted = windows.apply(alert)
    assert muted["severity"] == "info"
    assert muted["reason"] == ("M1: something; muted: during planned maintenance 06:00-06:40 UTC")
    assert alert["severity"] == "warning" and alert["reason"] == "M1: something"
    # the demo's routing pages nobody for it, and the unmuted alert as before
    routing = default_routing(Path("/tmp"))
    assert routing.roles_for("anomaly", "L1", muted["severity"]) == []
    assert routing.roles_for("anomaly", "L1", alert["severity"]) == ["quality"]


def test_an_alert_raised_in_a_setup_state_is_muted() -> None:
    windows = MuteWindows()
    windows.add_states(_setup_states())
    muted = windows.apply(_alert(raised_min=10, last_min=12))
    assert muted["severity"] == "info"
    assert "muted: during setup (Setup) 06:00-06:25 UTC" in muted["reason"]
    # within the margin after the setup ends, too
    assert windows.apply(_alert(raised_min=27, last_min=28))["severity"] == "info"
    # after the margin, the process's own again
    assert windows.apply(_alert(raised_min=31, last_min=32))["severity"] == "warning"


def test_a_setup_still_going_on_mutes() -> None:
    windows = MuteWindows()
    windows.add_states(_setup_states()[:1])
    muted = windows.apply(_alert(raised_min=90, last_min=95))
    assert "muted: during setup (Setup) 06:00- UTC" in muted["reason"]


def test_an_alert_that_outlasts_the_interval_is_the_processs() -> None:
    windows = MuteWindows()
    windows.add_maintenance(_maintenance(minutes=40))
    assert windows.apply(_alert(raised_min=30, last_min=44))["severity"] == "info"
    assert windows.apply(_alert(raised_min=30, last_min=45))["severity"] == "warning"


def test_downgrade_lowers_one_level_where_mute_goes_to_info() -> None:
    down = MuteWindows(MuteSettings(action="downgrade"))
    down.add_maintenance(_maintenance("tool_change"))
    mute = MuteWindows()
    mute.add_maintenance(_maintenance("tool_change"))
    critical = _alert(severity="critical")
    assert down.apply(critical)["severity"] == "warning"
    assert down.apply(_alert())["severity"] == "info"
    assert "downgraded from critical: during tool change" in down.apply(critical)["reason"]
    assert mute.apply(critical)["severity"] == "info"
    off = MuteWindows(MuteSettings(action="off"))
    off.add_maintenance(_maintenance())
    assert off.apply(critical) is critical


def test_unmuted_causes_and_sources_are_configurable() -> None:
    windows = MuteWindows()
    windows.add_maintenance(_maintenance("repair"))
    assert windows.apply(_alert("failure_risk"))["severity"] == "warning"
    assert windows.apply(_alert("sensor"))["severity"] == "info"
    strict = MuteWindows(MuteSettings(unmuted_causes=("failure_risk", "sensor")))
    strict.add_maintenance(_maintenance("repair"))
    assert strict.apply(_alert("sensor"))["severity"] == "warning"
    # a failure is not a planned stop, offline is not muted unless configured
    failures = MuteWindows()
    failures.add_maintenance(_maintenance("failure"))
    assert failures.apply(_alert())["severity"] == "warning"
    offline = [{**s, "category": "offline", "state": "Offline"} for s in _setup_states()[:1]]
    default, configured = MuteWindows(), MuteWindows(MuteSettings(state_categories=("offline",)))
    for w in (default, configured):
        w.add_states(offline)
    assert default.apply(_alert())["severity"] == "warning"
    assert configured.apply(_alert())["severity"] == "info"


def test_mute_windows_forget_old_intervals() -> None:
    windows = MuteWindows(max_intervals=8)
    day = [
        Maintenance("tool_change", T0 + timedelta(hours=h), T0 + timedelta(hours=h, minutes=5))
        for h in range(48)
    ]
    windows.add_maintenance(day)
    windows.add_states(
        {"machine_id": "M1", "since": T0 + timedelta(minutes=m), "state": s, "category": c}
        for m in range(0, 48 * 60, 30)
        for s, c in [("Setup", "setup")] * (m % 60 == 0) + [("Execute", "running")] * (m % 60 > 0)
    )
    assert len(windows._maintenance) <= 8 and len(windows._states) <= 8
    # still muting what is recent
    late = _alert(raised_min=47 * 60 + 2, last_min=47 * 60 + 3)
    assert windows.apply(late)["severity"] == "info"


def test_mute_windows_survive_a_pickle_round_trip() -> None:
    windows = MuteWindows()
    windows.add_states(_setup_states())
    alert = _alert(raised_min=10, last_min=12)
    assert pickle.loads(pickle.dumps(windows)).apply(alert) == windows.apply(alert)


# ------------------------------------------------------------------------------------------
# settings


def test_hygiene_settings_load_from_the_alerts_section(tmp_path: Path) -> None:
    path = tmp_path / "floorsight.toml"
    path.write_text(
        "[alerts]\nhold_s = 300\nincident_gap_s = 600\n\n"
        '[alerts.mute]\naction = "downgrade"\nmargin_s = 60\nunmuted_causes = []\n'
    )
    hygiene = load_alert_hygiene(path)
    assert hygiene.hold == timedelta(minutes=5)
    assert hygiene.incidents().gap == timedelta(minutes=10)
    windows = hygiene.mute_windows()
    assert windows.settings.action == "downgrade" and windows.settings.unmuted_causes == ()
    assert AlertHygiene.from_toml({}) == AlertHygiene()
    assert AlertHygiene().hold == AlertTracker().hold


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[alerts]\nhold_s = 900\nincident_gap_s = 60\n", "shorter than hold_s"),
        ("[alerts]\nhold = 900\n", "alerts.hold: Extra inputs are not permitted"),
        ('[alerts.mute]\naction = "silence"\n', "alerts.mute.action"),
        ("[alerts\n", "floorsight.toml"),
    ],
)
def test_bad_hygiene_settings_name_the_file_and_entry(
    tmp_path: Path, text: str, message: str
) -> None:
    path = tmp_path / "floorsight.toml"
    path.write_text(text)
    with pytest.raises(AlertHygieneError) as e:
        load_alert_hygiene(path)
    assert str(e.value).startswith(str(path)) and message in str(e.value)


def test_a_cause_that_starts_at_info_is_shown_not_escalated() -> None:
    from floorsight.alerts.engine import AlertSettings, MachineAlerting

    tracker = AlertTracker(cause="capability", severity="info", critical_after=3)
    t0 = datetime(2026, 4, 6, tzinfo=UTC)
    rows = [
        {
            "machine_id": "M1",
            "window_start": t0 + timedelta(seconds=10 * i),
            "window_end": t0 + timedelta(seconds=10 * i + 10),
            "work_order": "WO-1",
            "product": "P",
            "material_lot": "L",
            "score": 0.9,
            "is_anomaly": True,
            "evidence": "",
        }
        for i in range(20)
    ]
    (alert,) = tracker.update_rows(rows)
    assert alert["severity"] == "info" and alert["windows"] == 20
    # a flagged window's own severity still wins
    (alert,) = tracker.update_rows([{**rows[-1], "severity": "critical"}])
    assert alert["severity"] == "critical"
    # the defaults: capability and deviation start at info, the others at warning
    engine = MachineAlerting(AlertSettings())
    assert engine.trackers["capability"].severity == "info"
    assert engine.trackers["anomaly"].severity == "warning"
    hygiene = AlertHygiene.from_toml({"alerts": {"severity": {"capability": "warning"}}})
    assert MachineAlerting(AlertSettings(hygiene=hygiene)).trackers["capability"].severity == (
        "warning"
    )
