"""Validation at the edge: split a readings batch into valid rows and dead letters.

Every rejected reading keeps its raw values and gets a reason that names the rule it broke; the
valid rows around it go on. The checks are vectorised, so a clean batch costs a few column scans.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import polars as pl

from floorsight.records import READING_SCHEMA, utc_now

DEAD_LETTER_COLUMNS = ("source", "machine_id", "sensor", "ts", "value", "raw", "reason")


@dataclass(frozen=True, slots=True)
class Checked:
    """A batch split by validation: rows that passed and dead letters (with reasons)."""

    ok: pl.DataFrame
    dead: pl.DataFrame | None


@dataclass(frozen=True, slots=True)
class ReadingRules:
    """What a valid reading is. Ranges map a sensor name to (low, high)."""

    max_future: timedelta = timedelta(days=1)
    max_past: timedelta | None = None
    known_machines: frozenset[str] | None = None
    ranges: dict[str, tuple[float, float]] = field(default_factory=dict)


def validate_readings(
    batch: pl.DataFrame,
    rules: ReadingRules = ReadingRules(),
    source: str = "readings",
    now: datetime | None = None,
) -> Checked:
    """Split ``batch`` into valid readings and dead letters, each with the first failed rule."""
    missing = [c for c in READING_SCHEMA if c not in batch.columns]
    if missing:
        raise ValueError(f"{source}: batch lacks columns {missing} (has {batch.columns})")
    now = now or utc_now()
    value = pl.col("value")
    checks: list[tuple[pl.Expr, pl.Expr]] = [
        (
            pl.col("machine_id").is_null() | (pl.col("machine_id") == ""),
            pl.lit("machine_id missing"),
        ),
        (pl.col("sensor").is_null() | (pl.col("sensor") == ""), pl.lit("sensor missing")),
        (pl.col("ts").is_null(), pl.lit("timestamp missing")),
        (value.is_null(), pl.lit("value missing")),
        (value.is_nan(), pl.lit("value is NaN")),
        (value.is_infinite(), pl.lit("value is infinite")),
        (
            pl.col("ts") > now + rules.max_future,
            pl.format(
                "timestamp {} is more than {} in the future",
                pl.col("ts"),
                pl.lit(str(rules.max_future)),
            ),
        ),
    ]
    if rules.max_past is not None:
        checks.append(
            (
                pl.col("ts") < now - rules.max_past,
                pl.format(
                    "timestamp {} is more than {} in the past",
                    pl.col("ts"),
                    pl.lit(str(rules.max_past)),
                ),
            )
        )
    if rules.known_machines is not None:
        checks.append(
            (
                ~pl.col("machine_id").is_in(sorted(rules.known_machines)),
                pl.format("unknown machine {}", pl.col("machine_id")),
            )
        )
    for sensor, (low, high) in rules.ranges.items():
        checks.append(
            (
                (pl.col("sensor") == sensor) & ((value < low) | (value > high)),
                pl.format(
                    "{} = {} outside [{}, {}]", pl.col("sensor"), value, pl.lit(low), pl.lit(high)
                ),
            )
        )
    reason = pl.when(checks[0][0]).then(checks[0][1])
    for cond, text in checks[1:]:
        reason = reason.when(cond).then(text)
    flagged = batch.with_columns(_reason=reason.otherwise(None))
    bad = flagged["_reason"].is_not_null()
    if not bad.any():
        return Checked(batch, None)
    ok = flagged.filter(~bad).drop("_reason")
    dead = dead_letters(flagged.filter(bad), source, reason_col="_reason")
    return Checked(ok, dead)


def dead_letters(
    rows: pl.DataFrame, source: str, reason: str | None = None, reason_col: str | None = None
) -> pl.DataFrame:
    """Readings as dead-letter rows: their raw values as JSON, a reason, a stable id."""
    raw_cols = [c for c in rows.columns if c != reason_col]
    reason_expr = pl.col(reason_col) if reason_col else pl.lit(reason)
    out = rows.select(
        pl.lit(source).alias("source"),
        pl.col("machine_id").cast(pl.String),
        pl.col("sensor").cast(pl.String),
        pl.col("ts").cast(READING_SCHEMA["ts"], strict=False),
        pl.col("value").cast(pl.Float64, strict=False),
        pl.struct(raw_cols).struct.json_encode().alias("raw"),
        reason_expr.alias("reason"),
    )
    # the id makes a repeated write (recovery replay) land on the same row
    return out.with_columns(
        dead_letter_id=pl.concat_str(["source", "raw", "reason"], separator="|", ignore_nulls=True)
        .hash(seed=17)
        .cast(pl.String),
        received_at=pl.lit(utc_now()).cast(READING_SCHEMA["ts"]),
    )


def parse_records(
    records: list[dict], source: str = "records", units: dict[str, str] | None = None
) -> Checked:
    """Readings from raw records (decoded JSON, CSV rows): wrong types become dead letters.

    A source that already rejected a record (say, undecodable bytes) passes it as a dict with
    a ``_reason``. Each record should have ``machine_id``, ``sensor`` (strings), ``ts`` (ISO
    8601 with a time zone, or a timezone-aware datetime) and ``value`` (a number). A record
    that is not a dict, or whose fields have the wrong type, is dead-lettered with the field
    and the reason; the rest are returned as a frame in the reading schema (not yet
    range-checked: see :func:`validate_readings`). With ``units`` (sensor -> unit), a record
    that states a ``unit`` other than its sensor's is dead-lettered too: a value in the wrong
    unit is a wrong value.
    """
    good: list[dict] = []
    dead: list[dict] = []
    for record in records:
        row, reason = _coerce(record)
        if reason is None and units:
            reason = _unit_mismatch(record, units)
        if reason is None:
            good.append(row)
        else:
            dead.append(
                {
                    "machine_id": _text(record, "machine_id"),
                    "sensor": _text(record, "sensor"),
                    "raw": _json(record),
                    "reason": reason,
                }
            )
    ok = pl.DataFrame(good, schema=READING_SCHEMA)
    if not dead:
        return Checked(ok, None)
    frame = pl.DataFrame(
        dead,
        schema={
            "machine_id": pl.String,
            "sensor": pl.String,
            "raw": pl.String,
            "reason": pl.String,
        },
    )
    out = frame.select(
        pl.lit(source).alias("source"),
        "machine_id",
        "sensor",
        pl.lit(None, dtype=READING_SCHEMA["ts"]).alias("ts"),
        pl.lit(None, dtype=pl.Float64).alias("value"),
        "raw",
        "reason",
    ).with_columns(
        dead_letter_id=pl.concat_str(["source", "raw", "reason"], separator="|")
        .hash(seed=17)
        .cast(pl.String),
        received_at=pl.lit(utc_now()).cast(READING_SCHEMA["ts"]),
    )
    return Checked(ok, out)


def _coerce(record: object) -> tuple[dict | None, str | None]:
    if not isinstance(record, dict):
        return None, f"record is a {type(record).__name__}, not an object"
    if isinstance(record.get("_reason"), str):  # a source already knows what is wrong
        return None, record["_reason"]
    row = {}
    for name in ("machine_id", "sensor"):
        v = record.get(name)
        if not isinstance(v, str):
            return None, f"{name} {v!r} is not a string"
        row[name] = v
    ts = record.get("ts")
    if isinstance(ts, str):
        try:
            ts = datetime.fromisoformat(ts)
        except ValueError:
            return None, f"ts {record.get('ts')!r} is not an ISO 8601 time"
    if not isinstance(ts, datetime):
        return None, f"ts {ts!r} is not a time"
    if ts.tzinfo is None:
        return None, f"ts {record.get('ts')!r} has no time zone"
    try:
        row["ts"] = ts.astimezone(UTC)
    except (OverflowError, ValueError):
        return None, f"ts {record.get('ts')!r} is out of range"
    v = record.get("value")
    if isinstance(v, bool) or not isinstance(v, int | float):
        return None, f"value {v!r} is not a number"
    try:
        row["value"] = float(v)
    except OverflowError:
        return None, f"value {v!r} is out of range"
    return row, None


def _unit_mismatch(record: dict, units: dict[str, str]) -> str | None:
    expected = units.get(record["sensor"])
    unit = record.get("unit")
    if expected is None or unit is None or unit == expected:
        return None
    return f"unit {unit!r} of {record['sensor']} is not {expected!r}"


def _text(record: object, key: str) -> str | None:
    if isinstance(record, dict) and isinstance(record.get(key), str):
        return record[key]
    return None


def _json(record: object) -> str:
    return json.dumps(record, default=repr, sort_keys=True) if _jsonable(record) else repr(record)


def _jsonable(record: object) -> bool:
    try:
        json.dumps(record, default=repr)
    except (TypeError, ValueError):
        return False
    return True


def check_batch(item: pl.DataFrame | Checked, rules: ReadingRules, source: str) -> Checked:
    """Validate a source item: a frame of readings, or a Checked from a parsing source."""
    if isinstance(item, Checked):
        checked = validate_readings(item.ok, rules, source)
        dead = [d for d in (item.dead, checked.dead) if d is not None]
        return Checked(checked.ok, pl.concat(dead, how="vertical_relaxed") if dead else None)
    return validate_readings(item, rules, source)
