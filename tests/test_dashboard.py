"""The Streamlit dashboard, page by page, with Streamlit's AppTest on a database of known rows.

The database holds a plant at 07:00 UTC, one hour into the 06:00 shift, with 60 s windows:

- M1 (CNC, product PA) ran 06:00-06:30 and 06:40-07:00 under WO-1 (planned 05:00-09:00);
  5 of its 50 bore-diameter window means are above the USL. Its "last" readings follow a
  pattern with one spike (a rule-1 violation).
- M2 (moulding, PB) ran 06:00-06:30 (WO-2) and 06:45-07:00 (WO-3, planned from 06:40); its
  measured cycle time is the ideal 30 s for 30 windows and 40 s for 15; its part weight shifts
  up by 0.5 g after its first 20 windows (drift).
- M3 is in the setup of WO-4 (06:30-09:00); M4 ran 06:00-06:20 under WO-5 and is down for
  a repair since 06:50.

Every expected number below is worked out by hand from these rows (see each test). The app is
opened signed in as ``maria`` (engineer) from a test users file (``tests/dashboard_users.py``).
"""

from __future__ import annotations

import base64
import json
import math
import shutil
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import numpy as np
import polars as pl
import pytest
from streamlit.testing.v1 import AppTest

from floorsight.alerts import ALERT_SCHEMA, ALERTS, lifecycle
from floorsight.dashboards.charts import gapped
from floorsight.dashboards.common import FILE_ACCESS, literal, snapshot
from floorsight.dashboards.users import COOKIE_KEY_ENV, USERS_ENV
from floorsight.features import FEATURES
from floorsight.features.expectations import VALIDATION_RESULTS
from floorsight.models import SCORES
from floorsight.models.base import Context
from floorsight.models.capability import CAPABILITY, CapabilityModel
from floorsight.models.feature_drift import DRIFT
from floorsight.models.machine import by_machine, segments_of
from floorsight.models.spc_monitor import SPC, SpcModel
from floorsight.pipelines.flow import TABLES
from floorsight.pipelines.tables import MACHINE_STATES, PART_COUNTS, SPEC_LIMITS, WORK_ORDERS
from floorsight.storage import Database
from tests.dashboard_users import COOKIE_KEY, sign_in, write_users

APP = Path(__file__).resolve().parents[1] / "dashboards" / "app.py"
T0 = datetime(2026, 1, 5, 6, 0, tzinfo=UTC)  # start of the morning shift
NOW = T0 + timedelta(hours=1)
W = timedelta(seconds=60)
BORE, CYCLE, WEIGHT = "bore_diameter_mm", "cycle_time_s", "part_weight_g"
SPECS = {("PA", BORE): (11.95, 12.0, 12.05), ("PB", WEIGHT): (47.4, 48.0, 48.6)}
PRODUCTS = {"PA": ("cnc", 40.0), "PB": ("injection_moulding", 30.0), "PC": ("cnc", 55.0)}
ORDERS = {  # work order: machine, product, lot, start, end
    "WO-1": ("M1", "PA", "LOT-1", T0 - timedelta(hours=1), T0 + timedelta(hours=3)),
    "WO-2": ("M2", "PB", "LOT-2", T0, T0 + timedelta(minutes=30)),
    "WO-3": ("M2", "PB", "LOT-3", T0 + timedelta(minutes=40), T0 + timedelta(hours=2)),
    "WO-4": ("M3", "PC", "LOT-4", T0 + timedelta(minutes=30), T0 + timedelta(hours=3)),
    "WO-5": ("M4", "PA", "LOT-5", T0 - timedelta(hours=1), T0 + timedelta(hours=3)),
    "WO-6": ("M3", "PC", "LOT-6", T0 + timedelta(hours=3), T0 + timedelta(hours=4)),  # planned
}
SPIKE = 37  # index of M1's rule-1 spike among its 50 windows


def minutes(m: float) -> datetime:
    return T0 + timedelta(minutes=m)


def m1_windows() -> list[tuple[datetime, float, float]]:
    """(window start, mean, last) of M1's bore diameter: 30 windows, a gap, 20 windows."""
    starts = [minutes(i) for i in range(30)] + [minutes(40 + i) for i in range(20)]
    pattern = (0.0, 0.01, 0.0, -0.01)
    out = []
    for i, start in enumerate(starts):
        last = 12.0 + (0.04 if i == SPIKE else pattern[i % 4])
        mean = 12.06 if i in (5, 15, 25, 35, 45) else 12.0 + pattern[i % 4] / 2
        out.append((start, mean, last))
    return out


def m2_starts() -> list[datetime]:
    return [minutes(i) for i in range(30)] + [minutes(45 + i) for i in range(15)]


def feature(machine, sensor, start, wo, mean, last=None, std=0.01) -> dict:
    _, product, lot, *_ = ORDERS[wo]
    return {
        "machine_id": machine,
        "sensor": sensor,
        "window_start": start,
        "window_end": start + W,
        "work_order": wo,
        "product": product,
        "material_lot": lot,
        "batch": "B-" + wo.removeprefix("WO-"),
        "n": 60,
        "mean": mean,
        "std": std,
        "min": mean - 0.02,
        "max": mean + 0.02,
        "last": mean if last is None else last,
        "slope": 0.0,
        "rms": mean,
    }


def features() -> pl.DataFrame:
    rows = [feature("M1", BORE, s, "WO-1", mean, last) for s, mean, last in m1_windows()]
    for i, start in enumerate(m2_starts()):
        wo = "WO-2" if i < 30 else "WO-3"
        rows.append(feature("M2", CYCLE, start, wo, 30.0 if i < 30 else 40.0))
        weight = 48.0 + 0.001 * (i - 10) if i < 20 else 48.5
        rows.append(feature("M2", WEIGHT, start, wo, weight, std=0.05))
    rows += [feature("M4", BORE, minutes(i), "WO-5", 12.0) for i in range(20)]
    return pl.DataFrame(rows).select(FEATURES.columns)


def alert(alert_id, machine, wo, severity, status, raised, cause="anomaly", cleared=None):
    _, product, lot, *_ = ORDERS[wo]
    return {
        "alert_id": alert_id,
        "machine_id": machine,
        "cause": cause,
        "severity": severity,
        "status": status,
        "first_seen": raised - 2 * W,
        "raised_at": raised,
        "last_seen": raised + W,
        "cleared_at": cleared,
        "score": 0.99999,
        "windows": 3,
        "reason": f"{machine}: {cause} while running {wo}",
        "evidence": "vibration_mm_s.mean z=9.1 (value 3.2); spindle_temp_c.mean z=4.0 (value 47)",
        "work_order": wo,
        "product": product,
        "material_lot": lot,
    }


#: the alerts nobody has resolved: A1 critical open, A2 warning acknowledged (condition
#: cleared), A3 warning open on M2 (failure risk); A4 resolved; 30 resolved infos on M4
ALERT_ROWS = [
    alert("A1", "M1", "WO-1", "critical", "open", minutes(50)),
    alert("A2", "M1", "WO-1", "warning", "acknowledged", minutes(20), cleared=minutes(25)),
    alert("A3", "M2", "WO-3", "warning", "open", minutes(55), cause="failure_risk"),
    alert("A4", "M2", "WO-2", "warning", "resolved", minutes(10)),
    *(alert(f"I{i:02d}", "M4", "WO-5", "info", "resolved", minutes(i / 2)) for i in range(30)),
]


def capability_rows() -> pl.DataFrame:
    """What the stream's capability model writes for these windows (a row every 10 windows)."""
    rows = []
    for machine, segments in by_machine(segments_of(features())).items():
        out = CapabilityModel(every_windows=10).score_segments(segments, Context(machine, SPECS))
        rows += out.tables.get(CAPABILITY.name, [])
    return pl.DataFrame(rows).select(CAPABILITY.columns)


def spc_rows() -> pl.DataFrame:
    """The chart points the stream's SPC model writes for these windows."""
    rows = []
    for machine, segments in by_machine(segments_of(features())).items():
        out = SpcModel().score_segments(segments, Context(machine, SPECS))
        rows += out.tables.get(SPC.name, [])
    return pl.DataFrame(rows).select(SPC.columns)


def scores() -> pl.DataFrame:
    rows = []
    for machine, health, rul, risk in (
        ("M1", 0.5, None, 0.03),
        ("M2", 4.6, (6.0, 2.5, 14.0), 0.65),
    ):
        for k in range(3):
            rows.append(
                {
                    "machine_id": machine,
                    "window_start": NOW - (3 - k) * W,
                    "window_end": NOW - (2 - k) * W,
                    "work_order": "WO-1" if machine == "M1" else "WO-3",
                    "product": "PA" if machine == "M1" else "PB",
                    "material_lot": "LOT-1" if machine == "M1" else "LOT-3",
                    "model": "failure_risk",
                    "score": risk - 0.01 * (2 - k),
                    "is_anomaly": machine == "M2" and k == 2,
                    "evidence": json.dumps(
                        {
                            "health": health,
                            "rul_hours": rul and rul[0],
                            "rul_low_h": rul and rul[1],
                            "rul_high_h": rul and rul[2],
                            "sensors": [["vibration_mm_s", 5.1], ["spindle_temp_c", 4.6]],
                        }
                    ),
                }
            )
    # 4 anomaly-model windows of M1, one flagged; a drift model fired on M2 at 06:40
    for k in range(4):
        rows.append(
            {
                **rows[0],
                "window_start": minutes(40 + k),
                "window_end": minutes(41 + k),
                "model": "zscore",
                "score": 0.5,
                "is_anomaly": k == 3,
                "evidence": "",
            }
        )
    rows.append(
        {
            **rows[3],
            "window_start": minutes(39),
            "window_end": minutes(40),
            "model": "drift_psi",
            "score": 1.0,
            "is_anomaly": True,
            "evidence": "",
        }
    )
    return pl.DataFrame(rows).select(SCORES.columns)


def erp() -> dict[str, pl.DataFrame]:
    batch = {wo: "B-" + wo.removeprefix("WO-") for wo in ORDERS}
    customer = {
        "WO-1": "CO-1",
        "WO-2": "CO-2",
        "WO-3": "CO-2",
        "WO-4": "CO-3",
        "WO-5": "CO-2",
        "WO-6": "CO-4",
    }
    setup_end = {"WO-4": minutes(70)}
    return {
        "products": pl.DataFrame(
            [
                {"product": p, "description": p, "machine_type": t, "cycle_time_s": c}
                for p, (t, c) in PRODUCTS.items()
            ]
        ),
        "batches": pl.DataFrame(
            [
                {
                    "batch_id": batch[wo],
                    "work_order": wo,
                    "machine_id": m,
                    "product": p,
                    "start": start,
                    "setup_end": setup_end.get(wo, start),
                    "end": end,
                    "customer_order": customer[wo],
                    "good_parts": 10,
                    "scrap_parts": 1,
                }
                for wo, (m, p, _, start, end) in ORDERS.items()
            ]
        ),
        # B-5 was made from two lots, one of them LOT-1 (as B-1 was)
        "genealogy": pl.DataFrame(
            [
                {"batch_id": batch[wo], "material_lot": lot, "work_order": wo}
                for wo, (_, _, lot, *_) in ORDERS.items()
            ]
            + [{"batch_id": "B-5", "material_lot": "LOT-1", "work_order": "WO-5"}]
        ),
        "material_lots": pl.DataFrame(
            [
                {"lot_id": lot, "material": "bar", "supplier": "S", "received": T0}
                for _, _, lot, *_ in ORDERS.values()
            ]
        ),
        "customer_orders": pl.DataFrame(
            [
                {"customer_order": co, "customer": c, "product": p, "quantity": 100, "due": NOW}
                for co, c, p in (
                    ("CO-1", "Acme", "PA"),
                    ("CO-2", "Helix", "PB"),
                    ("CO-3", "Nordic", "PC"),
                    ("CO-4", "Vanta", "PC"),
                )
            ]
        ),
        "maintenance_log": pl.DataFrame(
            [
                {
                    "event_id": "MX-1",
                    "machine_id": "M4",
                    "kind": "failure",
                    "start": minutes(50),
                    "end": minutes(50),
                    "description": "bearing failure",
                },
                {
                    "event_id": "MX-2",
                    "machine_id": "M4",
                    "kind": "repair",
                    "start": minutes(50),
                    "end": minutes(90),
                    "description": "bearing failure",
                },
            ]
        ),
        # two lab results have arrived by 07:00, one has not
        "lab_results": pl.DataFrame(
            [
                {
                    "sample_id": s,
                    "machine_id": "M1",
                    "work_order": "WO-1",
                    "product": "PA",
                    "material_lot": "LOT-1",
                    "part_made_at": made,
                    "available_at": arrived,
                    "characteristic": BORE,
                    "value": value,
                    "in_spec": True,
                }
                for s, made, arrived, value in (
                    ("LAB-1", minutes(1.5), minutes(30), 12.004),
                    ("LAB-2", minutes(2.5), minutes(59), 12.010),
                    ("LAB-3", minutes(3.5), minutes(200), 12.020),
                )
            ]
        ),
    }


def build(path: Path) -> Path:
    db = Database(path, TABLES)
    db.create()
    orders = pl.DataFrame(
        [
            {
                "work_order": wo,
                "machine_id": m,
                "product": p,
                "material_lot": lot,
                "start": start,
                "end": end,
            }
            for wo, (m, p, lot, start, end) in ORDERS.items()
        ]
    ).select(WORK_ORDERS.columns)
    specs = pl.DataFrame(
        [
            {"product": p, "characteristic": c, "lsl": lsl, "target": t, "usl": usl}
            for (p, c), (lsl, t, usl) in SPECS.items()
        ]
    ).select(SPEC_LIMITS.columns)
    db.upsert(
        {
            FEATURES.name: [features()],
            ALERTS.name: [pl.DataFrame(ALERT_ROWS, schema=ALERT_SCHEMA)],
            SCORES.name: [scores()],
            WORK_ORDERS.name: [orders],
            SPEC_LIMITS.name: [specs],
            CAPABILITY.name: [capability_rows()],
            SPC.name: [spc_rows()],
        }
    )
    for name, frame in erp().items():
        db.replace_table(f"erp_{name}", frame)
    drift_db = Database(path, [DRIFT])
    drift_db.create()
    drift_db.upsert({DRIFT.name: [drift_rows()]})
    return path


def drift_rows() -> pl.DataFrame:
    """What the feature drift model stored for M2's PB part weight: PSI of its mean every 10
    windows from 06:20 (0.1, then 8.3 once the recent windows hold the shift at 06:30), the
    multivariate Σ PSI beside it, and one ADWIN firing at 06:25."""
    rows = []
    for k, (psi, total) in enumerate(((0.1, 0.2), (8.3, 8.4), (8.3, 8.4))):
        end = minutes(20 + 10 * k)
        for feature, detector, value, limit in (
            (f"{WEIGHT}.mean", "psi", psi, 1.5),
            ("multivariate", "multivariate", total, 3.0),
        ):
            rows.append(
                {
                    "machine_id": "M2",
                    "product": "PB",
                    "feature": feature,
                    "window_end": end,
                    "detector": detector,
                    "statistic": value,
                    "limit": limit,
                    "drifted": value > limit,
                    "reference_windows": 20,
                    "current_windows": 10,
                }
            )
    rows.append(
        {
            **rows[0],
            "window_end": minutes(25),
            "detector": "adwin",
            "statistic": 9.0,
            "limit": 4.0,
            "drifted": True,
        }
    )
    return pl.DataFrame(rows, schema=DRIFT.polars_schema)


@pytest.fixture(scope="module", autouse=True)
def dashboard_users(tmp_path_factory):
    """The test users file (and cookie key) every app of this module signs in with."""
    path = write_users(tmp_path_factory.mktemp("users") / "dashboard_users.yaml")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(USERS_ENV, str(path))
        mp.setenv(COOKIE_KEY_ENV, COOKIE_KEY)
        yield path


@pytest.fixture(scope="module")
def plant_db(tmp_path_factory) -> Path:
    """The known plant, built once; tests that write get their own copy (``writable_db``)."""
    return build(tmp_path_factory.mktemp("plant") / "floorsight.duckdb")


@pytest.fixture
def writable_db(plant_db: Path, tmp_path: Path) -> Path:
    return Path(shutil.copy(plant_db, tmp_path / "floorsight.duckdb"))


@pytest.fixture(scope="module")
def shown(plant_db):
    """Pages of the known plant as first shown, each run once for the tests that only look."""
    cache: dict[str | None, AppTest] = {}

    def page(name: str | None = None) -> AppTest:
        if name not in cache:
            with pytest.MonkeyPatch.context() as mp:
                cache[name] = open_app(mp, plant_db, name)
        return cache[name]

    return page


def open_app(
    monkeypatch, db_path: Path, page: str | None = None, user: str = "maria", **env
) -> AppTest:
    monkeypatch.setenv("FLOORSIGHT_DB", str(db_path))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    at = AppTest.from_file(str(APP), default_timeout=60)
    at.run()
    sign_in(at, user)
    if page:
        at.switch_page(page).run()
    assert_ok(at)
    return at


def assert_ok(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


def metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def table(at: AppTest, *columns: str):
    """The one table on the page that has all these columns (as a pandas frame)."""
    found = [d.value for d in at.dataframe if set(columns) <= set(d.value.columns)]
    assert len(found) == 1, f"{len(found)} tables with columns {columns}"
    return found[0]


def figures(at: AppTest) -> list[dict]:
    return [json.loads(c.proto.spec) for c in at.get("plotly_chart")]


def traces(figure: dict) -> dict[str, dict]:
    return {t.get("name"): t for t in figure["data"]}


def values(array) -> list:
    """Plotly packs numeric arrays as ``{"dtype": ..., "bdata": base64}``; unpack either form.
    The gaps where a line breaks (None or NaN) are left out."""
    if isinstance(array, dict):
        array = np.frombuffer(base64.b64decode(array["bdata"]), dtype=array["dtype"]).tolist()
    return [v for v in array if v is not None and not (isinstance(v, float) and math.isnan(v))]


# ----------------------------------------------------------------------------------------------
# plant overview


def overview_rows(at: AppTest) -> dict[str, dict]:
    frame = at.dataframe[0].value
    return {r["machine"]: r for r in frame.to_dict("records")}


def test_overview_shows_each_machine_with_state_order_and_open_alerts(shown):
    at = shown()
    assert at.title[0].value == "Plant overview"
    assert at.selectbox[0].value == "2026-01-05 06:00–14:00 UTC"
    assert metrics(at) == {
        "Feature rows": str(50 + 2 * 45 + 20),
        "Active alerts": "2",  # A1 and A3: A2's condition has cleared, the rest are resolved
        "Alerts": str(len(ALERT_ROWS)),
        "Dead letters": "0",
    }
    rows = overview_rows(at)
    assert list(rows) == ["M1", "M3", "M4", "M2"]  # by line (machine type), then machine
    got = {m: (r["line"], r["state"], r["work_order"], r["product"]) for m, r in rows.items()}
    assert got == {
        "M1": ("cnc", "running", "WO-1", "PA"),
        "M2": ("injection_moulding", "running", "WO-3", "PB"),
        "M3": ("cnc", "setup", "WO-4", "PC"),
        "M4": ("cnc", "down (repair)", "WO-5", "PA"),
    }
    open_counts = {
        m: (r["open critical"], r["open warning"], r["open info"]) for m, r in rows.items()
    }
    assert open_counts == {"M1": (1, 1, 0), "M2": (0, 1, 0), "M3": (0, 0, 0), "M4": (0, 0, 0)}


def test_overview_oee_equals_the_hand_computed_shift_values(shown):
    rows = overview_rows(shown())
    # M1: planned 06:00-07:00 = 3600 s, ran 30 + 20 windows of 60 s = 3000 s; 45 of 50 means
    # in spec; no cycle time measured, so no performance and no OEE
    assert rows["M1"]["availability"] == pytest.approx(3000 / 3600)
    assert math.isnan(rows["M1"]["performance"]) and math.isnan(rows["M1"]["OEE"])
    assert rows["M1"]["quality"] == pytest.approx(45 / 50)
    # M2: planned 1800 s (WO-2) + 1200 s (WO-3 from 06:40), ran 1800 + 900 s; cycle time
    # ideal 30 s, measured 30 s in 30 windows and 40 s in 15; every part weight in spec
    a, p, q = 2700 / 3000, (30 * 1.0 + 15 * 30 / 40) / 45, 1.0
    assert (rows["M2"]["availability"], rows["M2"]["performance"], rows["M2"]["quality"]) == (
        pytest.approx(a),
        pytest.approx(p),
        q,
    )
    assert rows["M2"]["OEE"] == pytest.approx(a * p * q) == pytest.approx(0.825)
    # M3 (in setup since 06:30) has not run; M4 ran 20 of its 60 planned minutes
    assert rows["M3"]["availability"] == 0.0
    assert rows["M4"]["availability"] == pytest.approx(1 / 3)


def floor_signals(path: Path) -> None:
    """Machine states and part counts from the floor, as the pipeline stores them, for M2, M3
    (offline only) and M4; M1 reports none."""

    def state(machine, at, category, name, code=None):
        return {
            "machine_id": machine,
            "since": at,
            "code": code,
            "text": None if code is not None else name,
            "state": name,
            "category": category,
        }

    states = [
        state("M2", minutes(-10), "running", "Execute", 6.0),
        state("M2", minutes(20), "down", "Held", 11.0),
        state("M2", minutes(25), "running", "Execute", 6.0),
        state("M2", minutes(30), "idle", "Idle", 4.0),
        state("M2", minutes(40), "planned_stop", "maintenance"),
        state("M2", minutes(50), "running", "Execute", 6.0),
        state("M3", minutes(0), "offline", "offline"),
        state("M4", minutes(-30), "running", "Execute", 6.0),
        state("M4", minutes(30), "idle", "Idle", 4.0),
        state("M4", minutes(50), "down", "Aborted", 9.0),
    ]
    counts = [  # (signal, minute, counter, parts, reset)
        ("good_count", -5, 100, 0, False),  # the counter's base, before the shift
        ("good_count", 10, 130, 30, False),
        ("good_count", 29, 150, 20, False),
        ("good_count", 55, 160, 10, False),
        ("scrap_count", -5, 5, 0, False),
        ("scrap_count", 15, 8, 3, False),
        ("scrap_count", 56, 2, 2, True),  # a PLC restart: counted from 0 again
    ]
    Database(path, TABLES).upsert(
        {
            "machine_states": [pl.DataFrame(states).select(MACHINE_STATES.columns)],
            "part_counts": [
                pl.DataFrame(
                    [
                        {
                            "machine_id": "M2",
                            "signal": sig,
                            "ts": minutes(m),
                            "counter": counter,
                            "parts": parts,
                            "reset": reset,
                        }
                        for sig, m, counter, parts, reset in counts
                    ]
                ).select(PART_COUNTS.columns)
            ],
        }
    )


def test_overview_oee_from_the_floors_states_and_counts(monkeypatch, writable_db):
    floor_signals(writable_db)
    rows = overview_rows(open_app(monkeypatch, writable_db))
    assert {m: r["basis"] for m, r in rows.items()} == {
        "M1": "windows",  # no states, no counters
        "M2": "states + counts",
        "M3": "windows",  # offline says nothing about production
        "M4": "states",
    }
    # M2: WO-2 06:00-06:30 and WO-3 from 06:40 are 3000 s scheduled, minus the planned stop
    # 06:40-06:50: 2400 s planned; running 06:00-06:20, 06:25-06:30, 06:50-07:00: 2100 s.
    # 60 good and 5 scrap parts (the reset counts its 2), at the ideal 30 s of PB: 1950 s.
    a, p, q = 2100 / 2400, 65 * 30 / 2100, 60 / 65
    m2 = rows["M2"]
    assert (m2["availability"], m2["performance"], m2["quality"]) == (
        pytest.approx(a),
        pytest.approx(p),
        pytest.approx(q),
    )
    assert m2["OEE"] == pytest.approx(a * p * q) and m2["OEE"] != pytest.approx(0.825)
    # M4: running 06:00-06:30 of its 3600 s planned; performance and quality from its windows
    assert rows["M4"]["availability"] == pytest.approx(0.5)
    assert rows["M4"]["quality"] == 1.0 and math.isnan(rows["M4"]["performance"])
    # M1 and M3 keep their window-based figures
    assert rows["M1"]["availability"] == pytest.approx(3000 / 3600)
    assert rows["M3"]["availability"] == 0.0
    # the state column shows the floor's own state where there is one
    states = {m: r["state"] for m, r in rows.items()}
    assert states == {
        "M1": "running",
        "M2": "running (Execute)",
        "M3": "offline",
        "M4": "down (repair: Aborted)",  # the CMMS log says why
    }


def test_overview_offers_the_shifts_that_have_data(shown):
    at = shown()
    assert at.selectbox[0].options == ["2026-01-05 06:00–14:00 UTC"]  # data starts at 06:00


@pytest.mark.parametrize(
    "page",
    [
        None,
        *(
            f"page_{p}.py"
            for p in ("alerts", "spc", "drift", "models", "traceability", "data_quality")
        ),
    ],
)
def test_every_page_renders_on_a_database_the_pipeline_just_created(monkeypatch, tmp_path, page):
    path = tmp_path / "floorsight.duckdb"
    Database(path, TABLES).create()  # what the pipeline does first: tables, no rows yet
    at = open_app(monkeypatch, path, page)
    assert not at.error


def test_waits_for_the_pipeline_when_there_is_no_database(monkeypatch, tmp_path):
    missing = tmp_path / "nothing-yet.duckdb"
    at = open_app(monkeypatch, missing)
    assert len(at.info) == 1
    assert "Waiting for the pipeline" in at.info[0].value
    assert literal(missing) in at.info[0].value
    assert not at.metric
    assert not missing.exists()


# ----------------------------------------------------------------------------------------------
# alerts inbox


def test_inbox_counts_open_alerts_by_severity_and_lists_them_most_severe_first(shown):
    at = shown("page_alerts.py")
    assert metrics(at) == {
        "Open critical": "1",
        "Open warning": "2",
        "Open info": "0",
        "Acknowledged": "1",
    }
    listed = at.dataframe[0].value
    assert list(listed["alert_id"]) == ["A1", "A3", "A2"]  # critical, then newest warning first
    assert list(listed["status"]) == ["open", "open", "acknowledged"]
    # the picked alert (the first) with its reason, evidence and context
    assert at.selectbox(key="alert_id").value == "A1"
    assert f"**Reason:** {literal('M1: anomaly while running WO-1')}" in [
        m.value for m in at.markdown
    ]
    # st.table renders Markdown: the values are escaped
    context = dict(at.table[0].value.itertuples(index=False))
    assert (context["work order"], context["batch"], context["material lot"]) == (
        literal("WO-1"),
        literal("B-1"),
        literal("LOT-1"),
    )
    assert context["condition cleared"] == literal("no, still active")
    evidence = [m.value for m in at.markdown if m.value.startswith("- ")]
    assert evidence == [
        f"- {literal('vibration_mm_s.mean z=9.1 (value 3.2)')}\n"
        f"- {literal('spindle_temp_c.mean z=4.0 (value 47)')}"
    ]
    # B-1 shares LOT-1 with B-5, so CO-2 (B-5's customer) is affected as well as CO-1
    assert list(table(at, "customer_order", "customer")["customer_order"]) == ["CO-1", "CO-2"]


def test_inbox_link_opens_one_alert_even_when_resolved(monkeypatch, plant_db):
    monkeypatch.setenv("FLOORSIGHT_DB", str(plant_db))
    at = AppTest.from_file(str(APP), default_timeout=60)
    at.run()
    sign_in(at, "maria")
    at.switch_page("page_alerts.py")
    at.query_params["alert"] = "A4"  # /alerts?alert=A4, e.g. from a notification
    at.run()
    assert_ok(at)
    assert at.selectbox(key="alert_status").value == "all"
    assert at.selectbox(key="alert_id").value == "A4"
    assert "**Status:** resolved" in [m.value for m in at.markdown]


def test_inbox_pages_a_long_list(monkeypatch, plant_db):
    at = open_app(monkeypatch, plant_db, "page_alerts.py")
    at.selectbox(key="alert_status").select("all").run()
    assert_ok(at)
    pages = at.get("pagination")
    assert len(pages) == 1 and pages[0].num_pages == 2  # 34 alerts, 25 a page
    first = list(at.dataframe[0].value["alert_id"])
    assert len(first) == 25
    pages[0].set_value(2).run()
    assert_ok(at)
    second = list(at.dataframe[0].value["alert_id"])
    assert len(second) == len(ALERT_ROWS) - 25
    assert set(first) | set(second) == {a["alert_id"] for a in ALERT_ROWS}


def test_acknowledging_and_resolving_in_the_inbox_changes_the_database(monkeypatch, writable_db):
    at = open_app(monkeypatch, writable_db, "page_alerts.py", user="maria")
    assert not [t for t in at.text_input if t.key == "actor"]  # nobody types a name
    at.text_area(key="comment").input("checking the spindle bearing")
    at.button(key="acknowledge").click().run()
    assert_ok(at)
    assert at.success[0].value == "A1: acknowledge recorded by maria"
    db = Database(writable_db)
    assert db.query("SELECT status FROM alerts WHERE alert_id = 'A1'").item() == "acknowledged"
    assert lifecycle.history(writable_db, "A1").select("actor", "action", "comment").rows() == [
        ("maria", "acknowledged", "checking the spindle bearing")
    ]
    assert metrics(at)["Acknowledged"] == "2"
    assert list(table(at, "actor", "action")["action"]) == ["acknowledged"]

    # resolving needs a label: the page says so and nothing changes
    at.button(key="resolve").click().run()
    assert "needs a label" in at.error[0].value
    assert db.query("SELECT status FROM alerts WHERE alert_id = 'A1'").item() == "acknowledged"

    at.radio(key="label").set_value("true_problem")
    at.text_area(key="comment").input("bearing replaced")
    at.button(key="resolve").click().run()
    assert_ok(at)
    assert db.query("SELECT status FROM alerts WHERE alert_id = 'A1'").item() == "resolved"
    events = lifecycle.history(writable_db, "A1")
    assert events.select("action", "comment", "label").rows() == [
        ("acknowledged", "checking the spindle bearing", None),
        ("resolved", "bearing replaced", "true_problem"),
    ]
    assert metrics(at)["Open critical"] == "0"
    # the default filter shows unresolved alerts only: A1 has left the list
    assert list(at.dataframe[0].value["alert_id"]) == ["A3", "A2"]


def test_an_alert_action_waits_for_a_refresh_of_another_session(writable_db):
    """Streamlit serves every session from one process, and DuckDB refuses a read-write
    connection there while a read-only one is open ("different configuration"): an action
    passes through FILE_ACCESS, which lets it wait for the refresh instead of failing (and
    ``storage`` retries such a clash as a second line of defence)."""
    db = Database(writable_db)
    reading, release = threading.Event(), threading.Event()

    def refresh() -> None:
        with snapshot(db) as con:
            con.sql("SELECT count(*) FROM alerts").fetchall()
            reading.set()
            release.wait(timeout=60)

    reader = threading.Thread(target=refresh)
    reader.start()
    assert reading.wait(timeout=60)
    # DuckDB itself refuses the read-write connection beside the open read-only one ...
    with pytest.raises(duckdb.ConnectionException, match="different configuration"):
        duckdb.connect(str(writable_db)).close()

    errors: list[BaseException] = []

    def act() -> None:
        try:
            with FILE_ACCESS.write():
                lifecycle.acknowledge(writable_db, "A1", "maria")
        except BaseException as exc:
            errors.append(exc)

    writer = threading.Thread(target=act)
    writer.start()
    deadline = time.monotonic() + 60
    while FILE_ACCESS.waiting_writers == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert FILE_ACCESS.waiting_writers == 1  # the action waits while the refresh reads
    release.set()
    reader.join(timeout=60)
    writer.join(timeout=60)
    assert not errors
    assert db.query("SELECT status FROM alerts WHERE alert_id = 'A1'").item() == "acknowledged"


# ----------------------------------------------------------------------------------------------
# SPC


def test_spc_chart_is_the_streams_with_limits_per_product_spec_limits_and_violations(shown):
    at = shown("page_spc.py")
    assert at.selectbox(key="spc_machine").value == "M1"
    assert at.selectbox(key="spc_sensor").value == BORE
    chart = figures(at)[0]  # the control chart; the Cpk trend follows
    t = traces(chart)
    assert set(t) == {"value", "CL", "UCL", "LCL", "LSL", "USL", "violation"}
    xs = [mean for _, mean, _ in m1_windows()]
    assert values(t["value"]["y"]) == pytest.approx(xs)  # the window means the stream charted
    # phase I = PA's first 30 windows (SpcModel.phase1), drawn without limits; then centre =
    # their mean, sigma = mean moving range / 1.128
    phase1 = xs[:30]
    center = sum(phase1) / 30
    sigma = np.mean(np.abs(np.diff(phase1))) / 1.128
    assert len(values(t["CL"]["y"])) == 20
    assert set(np.round(values(t["CL"]["y"]), 9)) == {round(center, 9)}
    assert values(t["UCL"]["y"])[0] == pytest.approx(center + 3 * sigma)
    assert values(t["LCL"]["y"])[0] == pytest.approx(center - 3 * sigma)
    assert set(values(t["LSL"]["y"])) == {11.95} and set(values(t["USL"]["y"])) == {12.05}
    # the violations as the stream named them: the two windows beyond the limits, and the
    # ninth in a row below the centre (which the phase I outliers pulled up)
    assert values(t["violation"]["y"]) == pytest.approx([xs[35], xs[44], xs[45]])
    violations = table(at, "rules", "center", "severity")
    assert list(violations["rules"]) == [
        "Nelson 1 (one point beyond 3 sigma)",
        "Nelson 2 (nine points in a row on one side of the center line)",
        "Nelson 1 (one point beyond 3 sigma)",
    ]
    assert violations["severity"].isna().all()  # recorded, not paged (SpcModel.page)


def test_spc_capability_equals_hand_computed_cp_cpk_pp_ppk(shown):
    """In-line: the stream's rolling row as of the newest window: M1's 50 windows of 60
    readings each (std 0.01), pooled; lab: the lab's single parts, as individuals."""
    at = shown("page_spc.py")
    cap = table(at, "Cpk", "source").to_dict("records")
    assert [(r["source"], r["product"]) for r in cap] == [("in-line", "PA"), ("lab", "PA")]
    means = np.array([mean for _, mean, _ in m1_windows()])
    lsl, usl = 11.95, 12.05
    mean = means.mean()
    within = 0.01  # every window's std: the pooled within-window sigma
    overall = math.sqrt((50 * 59 * 0.01**2 + 60 * ((means - mean) ** 2).sum()) / (3000 - 1))
    r = cap[0]
    assert (r["n"], r["windows"], r["basis"]) == (3000, 50, "subgroups")
    assert r["as of"] == NOW
    assert r["Cp"] == pytest.approx((usl - lsl) / (6 * within))
    assert r["Cpk"] == pytest.approx(min(usl - mean, mean - lsl) / (3 * within))
    assert r["Pp"] == pytest.approx((usl - lsl) / (6 * overall))
    assert r["Ppk"] == pytest.approx(min(usl - mean, mean - lsl) / (3 * overall))
    # the two lab results that had arrived by 07:00 (not the third, due at 09:20)
    lab = cap[1]
    lab_xs = np.array([12.004, 12.010])
    assert lab["n"] == 2
    assert lab["Pp"] == pytest.approx((usl - lsl) / (6 * lab_xs.std(ddof=1)))


def test_spc_cpk_trend_and_work_orders_come_from_the_capability_table(monkeypatch, plant_db):
    """M2's part weight: rolling rows every 10 windows across WO-2 and WO-3; WO-2's final row
    (its 30 windows) written when WO-3 started."""
    at = open_app(monkeypatch, plant_db, "page_spc.py")
    at.selectbox(key="spc_machine").select("M2").run()
    at.selectbox(key="spc_sensor").select(WEIGHT).run()
    assert_ok(at)
    stored = Database(plant_db).query(
        "SELECT * FROM capability WHERE machine_id = 'M2' ORDER BY window_end, scope, final"
    )
    t = traces(figures(at)[1])
    rolling = stored.filter(pl.col("scope") == "rolling")
    assert values(t["Cpk"]["y"]) == pytest.approx(rolling["cpk"].to_list())
    assert values(t["Ppk"]["y"]) == pytest.approx(rolling["ppk"].to_list())
    (final,) = stored.filter(pl.col("final")).to_dicts()
    assert (final["work_order"], final["n_windows"]) == ("WO-2", 30)
    assert values(t["work order Cpk"]["y"]) == pytest.approx([final["cpk"]])
    orders = table(at, "work_order", "final").to_dict("records")
    assert [(r["work_order"], r["final"], r["windows"]) for r in orders] == [
        ("WO-3", False, 10),
        ("WO-2", True, 30),
    ]


# ----------------------------------------------------------------------------------------------
# drift


def test_drift_compares_the_recent_windows_with_the_products_reference(monkeypatch, plant_db):
    at = open_app(monkeypatch, plant_db, "page_drift.py")
    assert at.selectbox(key="drift_line").options == ["all", "cnc", "injection_moulding"]
    at.selectbox(key="drift_line").select("injection_moulding").run()
    assert at.selectbox(key="drift_machine").options == ["M2"]
    at.selectbox(key="drift_machine").select("M2").run()
    at.selectbox(key="drift_sensor").select(WEIGHT).run()
    at.number_input(key="drift_ref").set_value(20).run()
    at.number_input(key="drift_win").set_value(10).run()
    assert_ok(at)
    assert at.selectbox(key="drift_product").value == "PB"
    hist, stats = figures(at)
    h = traces(hist)
    assert sorted(values(h["reference"]["x"])) == pytest.approx(
        [48.0 + 0.001 * (i - 10) for i in range(20)]
    )
    assert values(h["now"]["x"]) == pytest.approx([48.5] * 10)
    # the statistics are the drift table's, not recomputed: its last PSI of the mean and Σ PSI
    assert metrics(at)[f"PSI {literal(WEIGHT + '.mean')}"] == "8.300"
    assert metrics(at)[f"PSI {literal('multivariate')}"] == "8.400"
    assert values(traces(stats)[f"PSI {WEIGHT}.mean"]["y"]) == pytest.approx([0.1, 8.3, 8.3])
    # newest first: the drift model's flag at 06:40, the onsets of both statistics beyond
    # their limits at 06:30 (not the window after), the ADWIN firing at 06:25
    fired = table(at, "window_end", "source")
    assert list(zip(fired["window_end"], fired["source"], strict=True)) == [
        (minutes(40), "model drift_psi"),
        (minutes(30), "multivariate of multivariate beyond its limit"),
        (minutes(30), f"psi of {WEIGHT}.mean beyond its limit"),
        (minutes(25), f"adwin on {WEIGHT}.mean"),
    ]


# ----------------------------------------------------------------------------------------------
# predictions and models


def test_models_page_shows_failure_risk_rul_metrics_and_labels(monkeypatch, writable_db):
    lifecycle.resolve(writable_db, "A1", "maria", "bearing", "true_problem")
    lifecycle.resolve(writable_db, "A3", "tom", "sensor knocked", "false_alarm")
    at = open_app(monkeypatch, writable_db, "page_models.py")
    failure = table(at, "failure probability").to_dict("records")
    assert [r["machine_id"] for r in failure] == ["M1", "M2"]
    m2 = failure[1]
    assert m2["failure probability"] == pytest.approx(0.65)
    assert m2["health index"] == 4.6
    assert (m2["RUL (h)"], m2["RUL low (h)"], m2["RUL high (h)"]) == (6.0, 2.5, 14.0)
    assert m2["sensors"] == "vibration_mm_s, spindle_temp_c"
    assert m2["alert"]
    assert math.isnan(failure[0]["RUL (h)"])
    models = {r["model"]: r for r in table(at, "windows_scored").to_dict("records")}
    assert set(models) == {"drift_psi", "failure_risk", "zscore"}
    assert models["zscore"]["windows_scored"] == 4
    assert models["zscore"]["flagged_share"] == pytest.approx(0.25)
    feedback = {r["cause"]: r for r in table(at, "true_problems").to_dict("records")}
    assert (feedback["anomaly"]["true_problems"], feedback["anomaly"]["false_alarms"]) == (1, 0)
    assert feedback["failure_risk"]["precision"] == 0.0
    # lab vs in-line: the two results that had arrived, each against its window's mean
    caption = next(c.value for c in at.caption if "mean absolute difference" in c.value)
    inline = {1: m1_windows()[1][1], 2: m1_windows()[2][1]}
    mae = (abs(12.004 - inline[1]) + abs(12.010 - inline[2])) / 2
    assert caption == f"{literal(f'PA · {BORE}')}: 2 parts, mean absolute difference {mae:.4g}"
    assert "No MLflow registry configured" in " ".join(m.value for m in at.markdown)


def test_models_page_shows_the_mlflow_champion(monkeypatch, plant_db, tmp_path):
    mlflow = pytest.importorskip("mlflow")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment("quality")
    with mlflow.start_run() as run:
        mlflow.log_metric("mae", 0.0123)
    client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    client.create_registered_model("champion_quality")
    version = client.create_model_version(
        "champion_quality", f"runs:/{run.info.run_id}/m", run.info.run_id
    )
    client.set_registered_model_alias("champion_quality", "champion", version.version)
    client.create_registered_model("challenger_only")  # no champion: not listed
    at = open_app(monkeypatch, plant_db, "page_models.py", MLFLOW_TRACKING_URI=uri)
    champions = table(at, "registered_model").to_dict("records")
    assert [
        (c["registered_model"], c["version"], c["run_id"], c["metrics"]) for c in champions
    ] == [("champion_quality", "1", run.info.run_id, "mae=0.0123")]


def test_models_page_shows_the_champion_per_registered_version(monkeypatch, writable_db):
    """One model name, ``champion``; its versions apart from the evidence of its rows."""
    rows = [
        {
            **scores().row(0, named=True),
            "window_start": minutes(50 + k),
            "window_end": minutes(51 + k),
            "model": "champion",
            "score": 0.9 if flagged else 0.1,
            "is_anomaly": flagged,
            "evidence": json.dumps(
                {"model": "floorsight-failure", "version": v, "threshold": 0.5, "horizon_h": 1.0}
            ),
        }
        for k, (v, flagged) in enumerate([(1, False), (1, False), (1, True), (2, True), (2, True)])
    ]
    Database(writable_db, [SCORES]).upsert({"scores": [pl.DataFrame(rows)]})
    at = open_app(monkeypatch, writable_db, "page_models.py")
    metrics = table(at, "windows_scored").to_dict("records")
    champion = {r["version"]: r for r in metrics if r["model"] == "champion"}
    assert set(champion) == {"floorsight-failure@v1", "floorsight-failure@v2"}
    assert champion["floorsight-failure@v1"]["windows_scored"] == 3
    assert champion["floorsight-failure@v1"]["flagged_share"] == pytest.approx(1 / 3)
    assert champion["floorsight-failure@v2"]["flagged_share"] == 1.0
    # the other models are one row each, without a version
    others = [r for r in metrics if r["model"] != "champion"]
    assert others and len({r["model"] for r in others}) == len(others)
    assert not any(isinstance(r["version"], str) for r in others)  # NULL (NaN in pandas)


# ----------------------------------------------------------------------------------------------
# traceability


@pytest.mark.parametrize(
    ("kind", "picked", "lots", "batches", "orders", "alerts"),
    [
        # B-1 came from LOT-1, which also went into B-5: both batches and their orders are
        # suspect; alerts on WO-1 (A1, A2) and WO-5 (30 infos)
        ("batch", "B-1", ["LOT-1"], ["B-1", "B-5"], ["CO-1", "CO-2"], 32),
        ("material lot", "LOT-5", ["LOT-5"], ["B-5"], ["CO-2"], 30),
        ("customer order", "CO-1", ["LOT-1"], ["B-1"], ["CO-1"], 2),
    ],
)
def test_traceability_shows_genealogy_and_the_alerts_that_touch_it(
    monkeypatch, plant_db, kind, picked, lots, batches, orders, alerts
):
    at = open_app(monkeypatch, plant_db, "page_traceability.py")
    at.radio(key="trace_kind").set_value(kind).run()
    at.selectbox(key="trace_id").select(picked).run()
    assert_ok(at)
    assert metrics(at) == {
        "Material lots": str(len(lots)),
        "Batches": str(len(batches)),
        "Work orders": str(len(batches)),
        "Customer orders": str(len(orders)),
        "Alerts": str(alerts),
    }
    assert list(table(at, "lot_id")["lot_id"]) == lots
    assert list(table(at, "customer_order", "customer")["customer_order"]) == orders
    sankey = figures(at)[0]["data"][0]
    assert set(lots + batches + orders) <= set(sankey["node"]["label"])


def test_traceability_offers_only_what_has_started_newest_first(monkeypatch, plant_db):
    at = open_app(monkeypatch, plant_db, "page_traceability.py")
    # B-6 (WO-6, from 09:00) is planned, not made: it is not offered; ties by id
    assert at.selectbox(key="trace_id").options == ["B-3", "B-4", "B-2", "B-1", "B-5"]
    at.radio(key="trace_kind").set_value("customer order").run()
    assert at.selectbox(key="trace_id").options == ["CO-2", "CO-3", "CO-1"]
    at.radio(key="trace_kind").set_value("material lot").run()
    assert at.selectbox(key="trace_id").options == ["LOT-3", "LOT-4", "LOT-2", "LOT-1", "LOT-5"]


# ----------------------------------------------------------------------------------------------
# data quality


def test_data_quality_without_results_says_so(shown):
    at = shown("page_data_quality.py")
    assert [i.value for i in at.info] == ["No validation results yet."]


def test_data_quality_shows_the_latest_result_per_suite_and_table(monkeypatch, writable_db):
    rows = [
        (minutes(10), "readings", "features", True, 12, 0),
        (minutes(40), "readings", "features", False, 12, 2),
        (minutes(30), "context", "work_orders", True, 5, 0),
    ]
    with Database(writable_db).write() as con:
        # the pipeline's own table (the DuckDB file already has it when the flow created it)
        con.execute(VALIDATION_RESULTS.ddl)
        for r in rows:
            con.execute("INSERT INTO validation_results VALUES (?, ?, ?, ?, ?, ?, '{}')", list(r))
    at = open_app(monkeypatch, writable_db, "page_data_quality.py")
    assert metrics(at) == {
        "Suites × tables": "2",
        "Failing now": "1",
        "Failed expectations now": "2",
        "Dead letters": "0",
    }
    latest = at.dataframe[0].value
    assert latest[["suite", "table_name", "success"]].values.tolist() == [
        ["context", "work_orders", True],
        ["readings", "features", False],
    ]


# ----------------------------------------------------------------------------------------------
# the computations behind the pages, without Streamlit


def test_lines_break_in_gaps_longer_than_the_usual_spacing():
    ends = [minutes(i) for i in (0, 1, 2, 3, 30, 31)]
    part = pl.DataFrame({"window_end": ends, "value": [1.0, 2, 3, 4, 5, 6]})
    out = gapped(part, "window_end", ("value",))
    assert out["value"].to_list() == [1.0, 2, 3, 4, None, 5, 6]
    assert out["window_end"][4] == minutes(29.5)


def test_models_page_compares_lab_results_with_the_deviation_models_predictions(
    monkeypatch, writable_db
):
    from floorsight.models import SCORES

    predicted = {1: 12.001, 2: 12.016}
    rows = [
        {
            "machine_id": "M1",
            "window_start": minutes(i),
            "window_end": minutes(i + 1),
            "work_order": "WO-1",
            "product": "PA",
            "material_lot": "LOT-1",
            "model": "deviation",
            "score": 0.1,
            "is_anomaly": False,
            "evidence": json.dumps({BORE: {"predicted": p, "low": p - 0.01, "high": p + 0.01}}),
        }
        for i, p in predicted.items()
    ]
    Database(writable_db, [SCORES]).upsert({"scores": [pl.DataFrame(rows)]})
    at = open_app(monkeypatch, writable_db, "page_models.py")
    assert any("deviation model's prediction" in c.value for c in at.caption)
    caption = next(c.value for c in at.caption if "mean absolute difference" in c.value)
    mae = (abs(12.004 - predicted[1]) + abs(12.010 - predicted[2])) / 2
    assert caption == f"{literal(f'PA · {BORE}')}: 2 parts, mean absolute difference {mae:.4g}"
