"""The Streamlit dashboard, run headless with Streamlit's AppTest on a known database."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from streamlit.testing.v1 import AppTest

from floorsight.alerts import ALERTS
from floorsight.features import FEATURES
from floorsight.models import SCORES
from floorsight.pipelines.flow import TABLES
from floorsight.pipelines.tables import DEAD_LETTERS, SPEC_LIMITS, WORK_ORDERS
from floorsight.storage import Database

APP = Path(__file__).resolve().parents[1] / "dashboards" / "app.py"
T0 = datetime(2026, 1, 5, 6, 0, tzinfo=UTC)
SENSOR = "bore_diameter_mm"
# Product A on M1 and product B on M2, with different limits so the test sees which were joined.
SPECS = {"PA": (11.95, 12.0, 12.05), "PB": (24.9, 25.0, 25.1)}
ORDERS = {"WO-1": ("M1", "PA", "LOT-1"), "WO-2": ("M2", "PB", "LOT-2")}
WINDOWS = 4


def _frame(spec, rows: list[dict]) -> pl.DataFrame:
    return pl.DataFrame(rows).select(spec.columns)


def _features() -> pl.DataFrame:
    rows = []
    for wo, (machine, product, lot) in ORDERS.items():
        target = SPECS[product][1]
        for sensor in (SENSOR, "spindle_temp_c"):
            for i in range(WINDOWS):
                start = T0 + timedelta(seconds=10 * i)
                mean = target + 0.001 * i if sensor == SENSOR else 40.0 + i
                rows.append(
                    {
                        "machine_id": machine,
                        "sensor": sensor,
                        "window_start": start,
                        "window_end": start + timedelta(seconds=10),
                        "work_order": wo,
                        "product": product,
                        "material_lot": lot,
                        "batch": "B-" + wo,
                        "n": 10,
                        "mean": mean,
                        "std": 0.01,
                        "min": mean - 0.02,
                        "max": mean + 0.02,
                        "last": mean,
                        "slope": 0.0,
                        "rms": mean,
                    }
                )
    return _frame(FEATURES, rows)


ALERT_ROWS = [
    # (alert_id, machine, status, reason, condition cleared). The pipeline clears an alert by
    # setting cleared_at; status belongs to the people handling it and may still say "open".
    ("alert-m1-0001", "M1", "open", "bore_diameter_mm drifting above target", False),
    ("alert-m2-0002", "M2", "open", "spindle_temp_c step change", True),
]


def _alerts() -> pl.DataFrame:
    rows = []
    for i, (alert_id, machine, status, reason, cleared) in enumerate(ALERT_ROWS):
        wo = "WO-1" if machine == "M1" else "WO-2"
        _, product, lot = ORDERS[wo]
        raised = T0 + timedelta(seconds=20 + i)
        rows.append(
            {
                "alert_id": alert_id,
                "machine_id": machine,
                "cause": "drift",
                "severity": "warning",
                "status": status,
                "first_seen": raised - timedelta(seconds=10),
                "raised_at": raised,
                "last_seen": raised + timedelta(seconds=10),
                "cleared_at": raised + timedelta(seconds=20) if cleared else None,
                "score": 4.5 + i,
                "windows": 3,
                "reason": reason,
                "evidence": json.dumps({"sensor": SENSOR}),
                "work_order": wo,
                "product": product,
                "material_lot": lot,
            }
        )
    return _frame(ALERTS, rows)


def _context() -> dict[str, list[pl.DataFrame]]:
    orders = [
        {
            "work_order": wo,
            "machine_id": machine,
            "product": product,
            "material_lot": lot,
            "start": T0 - timedelta(hours=1),
            "end": T0 + timedelta(hours=1),
        }
        for wo, (machine, product, lot) in ORDERS.items()
    ]
    specs = [
        {"product": p, "characteristic": SENSOR, "lsl": lsl, "target": tgt, "usl": usl}
        for p, (lsl, tgt, usl) in SPECS.items()
    ]
    return {
        WORK_ORDERS.name: [_frame(WORK_ORDERS, orders)],
        SPEC_LIMITS.name: [_frame(SPEC_LIMITS, specs)],
    }


def _dead_letters() -> pl.DataFrame:
    row = {
        "dead_letter_id": "dl-1",
        "source": "edge",
        "machine_id": "M1",
        "sensor": SENSOR,
        "ts": T0,
        "value": None,
        "raw": '{"value": "nan"}',
        "reason": "value is not a finite number",
        "received_at": T0,
    }
    return pl.DataFrame([row], schema_overrides={"value": pl.Float64}).select(DEAD_LETTERS.columns)


@pytest.fixture
def filled_db(tmp_path: Path) -> Path:
    path = tmp_path / "floorsight.duckdb"
    db = Database(path, TABLES)
    db.create()
    db.upsert(
        {
            FEATURES.name: [_features()],
            ALERTS.name: [_alerts()],
            DEAD_LETTERS.name: [_dead_letters()],
            SCORES.name: [],
            **_context(),
        }
    )
    return path


def _run(monkeypatch: pytest.MonkeyPatch, db_path: Path) -> AppTest:
    monkeypatch.setenv("FLOORSIGHT_DB", str(db_path))
    at = AppTest.from_file(str(APP), default_timeout=30)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def _chart_traces(at: AppTest) -> dict[str, list]:
    charts = at.get("plotly_chart")
    assert len(charts) == 1
    figure = json.loads(charts[0].proto.spec)
    return {trace["name"]: {"y": _values(trace["y"])} for trace in figure["data"]}


def _values(array) -> list[float]:
    """Plotly packs numeric arrays as ``{"dtype": ..., "bdata": base64}``; unpack either form."""
    if isinstance(array, dict):
        return np.frombuffer(base64.b64decode(array["bdata"]), dtype=array["dtype"]).tolist()
    return [float(v) for v in array]


def test_metrics_count_the_rows_in_the_database(monkeypatch, filled_db):
    at = _run(monkeypatch, filled_db)
    active = sum(not cleared for *_, cleared in ALERT_ROWS)
    assert _metrics(at) == {
        "Feature rows": str(len(ORDERS) * 2 * WINDOWS),
        "Active alerts": str(active),
        "Alerts": str(len(ALERT_ROWS)),
        "Dead letters": "1",
    }
    assert active == 1


def test_alerts_table_lists_the_alerts(monkeypatch, filled_db):
    at = _run(monkeypatch, filled_db)
    assert [s.value for s in at.subheader] == ["Alerts"]
    assert len(at.dataframe) == 1
    shown = at.dataframe[0].value
    # Newest first, with the reason and status the pipeline wrote.
    assert list(shown["alert_id"]) == [a[0] for a in reversed(ALERT_ROWS)]
    assert list(shown["reason"]) == [a[3] for a in reversed(ALERT_ROWS)]
    assert list(shown["status"]) == [a[2] for a in reversed(ALERT_ROWS)]


def test_selectors_offer_machines_and_default_to_bore_diameter(monkeypatch, filled_db):
    at = _run(monkeypatch, filled_db)
    machine, feature = at.selectbox
    assert machine.options == ["M1", "M2"]
    assert machine.value == "M1"
    assert feature.options == [SENSOR, "spindle_temp_c"]
    assert feature.value == SENSOR


def test_chart_shows_the_spec_limits_of_the_product(monkeypatch, filled_db):
    at = _run(monkeypatch, filled_db)
    traces = _chart_traces(at)
    assert set(traces) == {f"{SENSOR} mean", "LSL", "TARGET", "USL"}
    lsl, target, usl = SPECS["PA"]
    assert set(traces["LSL"]["y"]) == {lsl}
    assert set(traces["TARGET"]["y"]) == {target}
    assert set(traces["USL"]["y"]) == {usl}
    assert len(traces[f"{SENSOR} mean"]["y"]) == WINDOWS

    # Switching machine shows that machine's product limits.
    at.selectbox[0].select("M2").run()
    assert not at.exception
    traces = _chart_traces(at)
    assert set(traces["LSL"]["y"]) == {SPECS["PB"][0]}
    assert set(traces["USL"]["y"]) == {SPECS["PB"][2]}


def test_chart_without_spec_limits_has_no_limit_lines(monkeypatch, filled_db):
    at = _run(monkeypatch, filled_db)
    at.selectbox[1].select("spindle_temp_c").run()
    assert not at.exception
    assert set(_chart_traces(at)) == {"spindle_temp_c mean"}


def test_waits_for_the_pipeline_when_there_is_no_database(monkeypatch, tmp_path):
    missing = tmp_path / "nothing-yet.duckdb"
    at = _run(monkeypatch, missing)
    assert len(at.info) == 1
    assert "Waiting for the pipeline" in at.info[0].value
    assert str(missing) in at.info[0].value
    assert not at.metric
    assert not missing.exists()
