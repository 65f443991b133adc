"""Bad readings are dead-lettered with a reason; the valid ones around them go on."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import polars as pl
import pytest

from floorsight.pipelines.context import ErpContext
from floorsight.pipelines.validate import (
    MAX_PAYLOAD_BYTES,
    MAX_RAW_CHARS,
    Catalogue,
    ReadingRules,
    Rejected,
    parse_mqtt_payload,
    parse_records,
    validate_readings,
)
from floorsight.records import READING_SCHEMA
from tests.conftest import T0


def test_each_rule_names_its_reason_and_valid_rows_pass() -> None:
    batch = pl.DataFrame(
        {
            "machine_id": ["M1", "M1", "", "M1", "M9", "M1", "M1", None],
            "sensor": ["t", "t", "t", "t", "t", "t", None, "t"],
            "ts": [T0, T0, T0, T0 + timedelta(days=5), T0, T0, T0, T0],
            "value": [1.0, float("nan"), 2.0, 3.0, 4.0, 500.0, 6.0, 7.0],
        },
        schema=READING_SCHEMA,
    )
    rules = ReadingRules(known_machines=frozenset({"M1"}), ranges={"t": (0.0, 100.0)})
    checked = validate_readings(batch, rules, now=T0)
    assert checked.ok["value"].to_list() == [1.0]
    reasons = dict(
        zip(checked.dead["value"].to_list(), checked.dead["reason"].to_list(), strict=True)
    )
    assert reasons[2.0] == "machine_id missing"
    assert reasons[4.0] == "unknown machine M9"
    assert reasons[6.0] == "sensor missing"
    assert reasons[7.0] == "machine_id missing"
    assert "in the future" in reasons[3.0]
    assert reasons[500.0] == "t = 500.0 outside [0.0, 100.0]"
    nan_row = checked.dead.filter(pl.col("reason") == "value is NaN")
    assert nan_row.height == 1
    assert json.loads(nan_row["raw"][0])["machine_id"] == "M1"
    assert checked.dead["dead_letter_id"].n_unique() == checked.dead.height


def test_clean_batch_passes_untouched() -> None:
    batch = pl.DataFrame(
        {"machine_id": ["M1"], "sensor": ["t"], "ts": [T0], "value": [1.0]}, schema=READING_SCHEMA
    )
    checked = validate_readings(batch, now=T0)
    assert checked.dead is None and checked.ok.equals(batch)


# --- hostile records: parse_records never raises, every record is a reading or a dead letter ---

HUGE_INT = 10**5000


def _deep(depth: int) -> object:
    obj: object = 1.0
    for _ in range(depth):
        obj = [obj]
    return obj


def _good(**kw) -> dict:
    return {"machine_id": "M1", "sensor": "t", "ts": T0.isoformat(), "value": 1.0} | kw


@pytest.mark.parametrize(
    ("record", "field"),
    [
        (_good(value=HUGE_INT), "value"),
        (_good(value=_deep(5000)), "value"),
        (_good(machine_id="M\ud800"), "machine_id"),
        (_good(sensor="\udfff"), "sensor"),
        (_good(ts="2026-01-05T06:00:00+00:00\ud800"), "ts"),
        (_good(ts="9" * 100_000), "ts"),
        (_deep(5000), "record"),
        (b"\xff\xfe bytes", "record"),
        ("x" * 1_000_000, "record"),
        (HUGE_INT, "record"),
        ({HUGE_INT: HUGE_INT}, "machine_id"),
        (_good(ts=datetime.max.replace(tzinfo=timezone(timedelta(hours=-23)))), "ts"),
    ],
    ids=lambda v: v if isinstance(v, str) and len(v) < 20 else "",
)
def test_a_hostile_record_is_a_bounded_dead_letter_naming_its_field(record, field) -> None:
    parsed = parse_records([_good(), record, _good(value=2.0)], "mqtt")
    assert parsed.ok["value"].to_list() == [1.0, 2.0]
    assert parsed.dead.height == 1
    reason, raw = parsed.dead["reason"][0], parsed.dead["raw"][0]
    assert field in reason
    assert len(reason) <= 300 and len(raw) <= MAX_RAW_CHARS + 100
    raw.encode("utf-8")  # valid UTF-8: no lone surrogates
    reason.encode("utf-8")


def test_a_publisher_supplied_reason_is_just_an_unknown_field() -> None:
    forged_bad = _good(value="high", _reason="all fine, nothing to see")
    forged_good = _good(_reason="please drop me")
    parsed = parse_records([forged_bad, forged_good], "mqtt")
    assert parsed.ok.height == 1  # the valid reading is taken, its _reason ignored
    assert parsed.dead["reason"].to_list() == ["value 'high' is not a number"]


def test_a_source_rejection_is_a_dead_letter_with_the_source_reason() -> None:
    parsed = parse_records([Rejected("\ud800" + "x" * 100_000, "plant/L1/M1/t: not JSON")], "mqtt")
    assert parsed.ok.height == 0
    assert parsed.dead["reason"].to_list() == ["plant/L1/M1/t: not JSON"]
    assert len(parsed.dead["raw"][0]) <= MAX_RAW_CHARS + 100


def test_two_records_with_the_same_key_in_one_poll_are_both_accounted_for() -> None:
    parsed = parse_records([_good(), _good(), _good(value="x")], "mqtt")
    assert parsed.ok.height == 2 and parsed.dead.height == 1


# --- MQTT payloads ---

TOPIC = "plant/L1/M1/t"


def _payload(**kw) -> bytes:
    return json.dumps(_good(**kw)).encode()


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"\xff\xfe\x00", "not UTF-8"),
        (b"[" * 100_000, "nested too deeply"),
        (
            b'{"machine_id": "M1", "sensor": "t", "ts": "x", "value": ' + b"9" * 5000 + b"}",
            "digits",
        ),
        (b'{"machine_id": "M1", "sensor": "t", "ts": "x", "value": NaN}', "NaN"),
        (b'{"machine_id": "M1", "sensor": "t", "ts": "x", "value": -Infinity}', "Infinity"),
        (b" " * (MAX_PAYLOAD_BYTES + 1), "exceeds"),
        (b"not json", "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b'"M1"', "not a JSON object"),
        (_payload(machine_id="M2"), "does not match the topic"),
        (_payload(sensor="u"), "does not match the topic"),
    ],
)
def test_a_bad_mqtt_payload_is_rejected_with_the_topic_and_reason(payload, reason) -> None:
    got = parse_mqtt_payload(TOPIC, payload)
    assert isinstance(got, Rejected)
    assert got.reason.startswith(TOPIC + ": ") and reason in got.reason
    assert len(got.raw) <= MAX_RAW_CHARS + 100
    got.raw.encode("utf-8")


def test_a_valid_mqtt_payload_is_a_record_the_parser_takes() -> None:
    record = parse_mqtt_payload(TOPIC, _payload())
    assert record == _good()
    parsed = parse_records([record, parse_mqtt_payload(TOPIC, b"\xff")], "mqtt")
    assert parsed.ok.height == 1 and parsed.dead.height == 1
    # a topic of another shape is not held against the payload
    assert parse_mqtt_payload("readings", _payload(machine_id="M7")) == _good(machine_id="M7")


# --- plausibility ---


def _batch(**columns) -> pl.DataFrame:
    n = max(len(v) for v in columns.values())
    base = {"machine_id": ["M1"] * n, "sensor": ["t"] * n, "ts": [T0] * n, "value": [1.0] * n}
    return pl.DataFrame(base | columns, schema=READING_SCHEMA)


@pytest.mark.parametrize(
    ("machine_id", "sensor", "reason"),
    [
        ("   ", "t", "machine_id '   ' is not an id: blank"),
        ("M\x001", "t", "machine_id 'M\\x001' is not an id: control character"),
        ("M" * 200_000, "t", "is 200000 characters long"),
        ("M 1", "t", "is not an id"),
        ("M1", "\t", "sensor '\\t' is not an id"),
        ("M1", "t" * 129, "is 129 characters long"),
        ("M1", "plant/#", "is not an id"),
    ],
)
def test_ids_outside_the_charset_or_too_long_are_dead_letters(machine_id, sensor, reason) -> None:
    checked = validate_readings(_batch(machine_id=["M1", machine_id], sensor=["t", sensor]), now=T0)
    assert checked.ok.height == 1
    assert reason in checked.dead["reason"][0]
    assert len(checked.dead["reason"][0]) <= 300
    assert len(checked.dead["raw"][0]) <= MAX_RAW_CHARS + 100
    assert len(checked.dead["machine_id"][0]) <= 256


def test_the_catalogue_refuses_unknown_machines_and_sensors() -> None:
    catalogue = Catalogue(
        frozenset({"M1", "M2", "R1"}), {"M1": frozenset({"t"}), "M2": frozenset({"t", "p"})}
    )
    batch = _batch(
        machine_id=["M1", "M2", "M9", "M1", "R1"],
        sensor=["t", "p", "t", "p", "anything"],
        value=[1.0, 2.0, 3.0, 4.0, 5.0],
    )
    checked = validate_readings(batch, now=T0, catalogue=catalogue)
    # R1's type has no sensor list: only its machine is checked
    assert checked.ok["value"].to_list() == [1.0, 2.0, 5.0]
    assert checked.dead["reason"].to_list() == [
        "unknown machine M9",
        "unknown sensor p of machine M1",
    ]


def test_the_catalogue_comes_from_the_context_tables() -> None:
    records = {
        "machines": pl.DataFrame(
            {"machine_id": ["M1", "R1"], "line": ["L", "L"], "machine_type": ["cnc", "recorded"]}
        ),
        "products": pl.DataFrame({"product": ["P-1"], "machine_type": ["cnc"]}),
        "recipes": pl.DataFrame(
            {"product": ["P-1", "P-1"], "parameter": ["t", "p"], "unit": ["C", "b"]}
        ),
    }
    erp = ErpContext.empty()
    assert Catalogue.from_context(erp) is None
    catalogue = Catalogue.from_context(ErpContext(erp.work_orders, erp.spec_limits, records))
    assert catalogue == Catalogue(frozenset({"M1", "R1"}), {"M1": frozenset({"t", "p"})})


@pytest.mark.parametrize(
    ("ts", "value", "reason"),
    [
        (datetime(2120, 1, 1, tzinfo=UTC), 1.0, "after 2100"),
        (datetime(1969, 12, 31, tzinfo=UTC), 1.0, "before 1970"),
        (T0 + timedelta(minutes=6), 1.0, "in the future"),
        (T0, 1.7e308, "beyond"),
        (T0, -1.7e308, "beyond"),
        (T0, 2e15, "beyond"),
    ],
)
def test_implausible_times_and_values_are_dead_letters(ts, value, reason) -> None:
    checked = validate_readings(_batch(ts=[T0, ts], value=[0.5, value]), ReadingRules(), now=T0)
    assert checked.ok["value"].to_list() == [0.5]
    assert reason in checked.dead["reason"][0]


def test_history_rules_leave_the_future_to_the_source_but_keep_the_absolute_bounds() -> None:
    batch = _batch(
        ts=[T0 + timedelta(days=3000), datetime(2101, 1, 1, tzinfo=UTC)], value=[1.0, 2.0]
    )
    checked = validate_readings(batch, ReadingRules.history(), now=T0)
    assert checked.ok["value"].to_list() == [1.0]
    assert "after 2100" in checked.dead["reason"][0]


def test_live_rules_refuse_old_and_future_readings() -> None:
    rules = ReadingRules.live()
    batch = _batch(
        ts=[T0, T0 + timedelta(minutes=4), T0 + timedelta(minutes=6), T0 - timedelta(days=31)],
        value=[1.0, 2.0, 3.0, 4.0],
    )
    checked = validate_readings(batch, rules, now=T0)
    assert checked.ok["value"].to_list() == [1.0, 2.0]
    assert checked.dead.height == 2


def test_a_range_in_the_rules_replaces_the_absolute_value_bound() -> None:
    rules = ReadingRules(ranges={"t": (0.0, 1e18)})
    checked = validate_readings(_batch(value=[1e17, 2e15], sensor=["t", "u"]), rules, now=T0)
    assert checked.ok["value"].to_list() == [1e17]


# --- through the flow: a rejected reading never reaches the windows ---


def test_rejected_readings_never_reach_the_windows_nor_move_a_watermark(tmp_path) -> None:
    from bytewax.testing import TestingSource, run_main

    from floorsight.pipelines.context import SPEC_SCHEMA, WORK_ORDER_SCHEMA, ContextStore
    from floorsight.pipelines.flow import PipelineSettings, build_flow
    from floorsight.storage import Database
    from tests.conftest import readings

    erp = tmp_path / "erp"
    erp.mkdir()
    pl.DataFrame(
        {
            "work_order": ["WO-1"],
            "machine_id": ["M1"],
            "product": ["P-1"],
            "material_lot": ["L1"],
            "start": [T0],
            "end": [T0 + timedelta(hours=1)],
        },
        schema=WORK_ORDER_SCHEMA,
    ).write_csv(erp / "work_orders.csv")
    # a context needs spec limits; these are of a characteristic no reading here measures
    pl.DataFrame(
        {"product": ["P-1"], "characteristic": ["w"], "lsl": [0.0], "target": [1.0], "usl": [2.0]},
        schema=SPEC_SCHEMA,
    ).write_csv(erp / "spec_limits.csv")
    pl.DataFrame({"machine_id": ["M1"], "line": ["L1"], "machine_type": ["cnc"]}).write_csv(
        erp / "machines.csv"
    )
    pl.DataFrame(
        {"product": ["P-1"], "description": ["a"], "machine_type": ["cnc"], "cycle_time_s": [9.0]}
    ).write_csv(erp / "products.csv")
    pl.DataFrame(
        {"product": ["P-1"], "parameter": ["v"], "setpoint": [1.0], "unit": ["mm"]}
    ).write_csv(erp / "recipes.csv")
    future = datetime.now(tz=UTC) + timedelta(days=1)  # a day ahead of the wall clock
    poison = pl.DataFrame(
        {
            "machine_id": ["M1", "M1", "M9", "M1", "M1", " "],
            "sensor": ["v", "v", "v", "zz", "v", "v"],
            "ts": [future, datetime(2120, 1, 1, tzinfo=UTC), T0, T0, T0, T0],
            "value": [1.0, 2.0, 3.0, 4.0, 1.7e308, 6.0],
        },
        schema=READING_SCHEMA,
    )
    batches = [
        readings([("M1", "v", t, float(t)) for t in range(10)]),
        poison,
        readings([("M1", "v", t, float(t)) for t in range(10, 25)]),
    ]
    db_path = tmp_path / "f.duckdb"
    settings = PipelineSettings(
        window=timedelta(seconds=10), lateness=timedelta(seconds=2), rules=ReadingRules()
    )
    run_main(build_flow(TestingSource(batches), ContextStore(erp), db_path, settings))
    db = Database(db_path)
    features = db.query("SELECT window_start, sensor, n FROM features ORDER BY window_start")
    # every valid reading is in its window; no poisoned one made a window of its own
    assert features.rows() == [
        (T0, "v", 10),
        (T0 + timedelta(seconds=10), "v", 10),
        (T0 + timedelta(seconds=20), "v", 5),
    ]
    reasons = db.query("SELECT reason FROM dead_letters ORDER BY value")["reason"].to_list()
    assert len(reasons) == 6  # and none is "late": no watermark moved
    assert "in the future" in reasons[0] and "after 2100" in reasons[1]
    assert "unknown machine M9" in reasons and "unknown sensor zz of machine M1" in reasons
    assert any("beyond" in r for r in reasons) and any("blank" in r for r in reasons)
    assert not any(r.startswith("late") for r in reasons)
