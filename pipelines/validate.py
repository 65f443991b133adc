"""Validation at the edge: raw records and reading batches split into readings and dead letters.

Every input is either taken or dead-lettered, and nothing raises, whatever a publisher sends:

- :func:`parse_mqtt_payload` turns one MQTT message (any bytes, any topic) into a record or a
  :class:`Rejected` naming the topic and the reason;
- :func:`parse_records` turns records (decoded JSON, CSV rows, :class:`Rejected`, or any other
  Python object) into a reading frame and dead letters with a bounded, valid UTF-8 excerpt;
- :func:`validate_readings` keeps only plausible readings: ids in the id charset, machine and
  sensor known to the context's :class:`Catalogue` when it has one, finite values within a sane
  bound (or the sensor's range), event times within absolute bounds and, for live sources, a
  window around the wall clock.

A rejected reading keeps its raw values and a reason that names the rule it broke; the valid
rows around it go on. The checks are vectorised (the id and catalogue checks run once per
distinct machine and sensor of a batch), so a clean batch costs a few column scans.
"""

from __future__ import annotations

import json
import logging
import re
import reprlib
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import polars as pl

from floorsight.records import READING_SCHEMA, utc_now

if TYPE_CHECKING:
    from floorsight.pipelines.context import ErpContext

log = logging.getLogger(__name__)

DEAD_LETTER_COLUMNS = ("source", "machine_id", "sensor", "ts", "value", "raw", "reason")

#: A machine id or sensor name: an ASCII letter or digit, then letters, digits, ``_ . : -``;
#: at most 128 characters. No whitespace, no control characters, no MQTT topic separators.
ID_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_.:\-]{0,127}"
MAX_ID_CHARS = 128
#: |value| beyond this is absurd for any plant sensor (unless the sensor's range allows it)
MAX_ABS_VALUE = 1e15
#: event times outside [EARLIEST, LATEST) are refused for every source
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(2100, 1, 1, tzinfo=UTC)
#: live sources (MQTT, OPC-UA): how far an event time may be ahead of / behind the wall clock
LIVE_MAX_FUTURE = timedelta(minutes=5)
LIVE_MAX_PAST = timedelta(days=30)
#: an MQTT payload larger than this is rejected unread
MAX_PAYLOAD_BYTES = 256 * 1024
#: a dead letter's ``raw`` column holds at most this many characters (then a marker)
MAX_RAW_CHARS = 4096
#: id columns of a dead letter, and excerpts of values in reasons, are cut to these lengths
MAX_DEAD_ID_CHARS = 256
MAX_EXCERPT_CHARS = 40
MAX_REASON_CHARS = 300

_ID = re.compile(ID_PATTERN)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_ID_REASON = "__validate_id_reason"
_SEEDS = (secrets.randbits(63), secrets.randbits(63))
_MIX = 0x9E3779B97F4A7C15
_REASON = "__validate_reason"


@dataclass(frozen=True, slots=True)
class Checked:
    """A batch split by validation: rows that passed and dead letters (with reasons)."""

    ok: pl.DataFrame
    dead: pl.DataFrame | None


@dataclass(frozen=True, slots=True)
class Rejected:
    """A record a source already refused (undecodable bytes, an oversized payload, ...).

    Sources pass it to :func:`parse_records` in place of a record; it becomes a dead letter
    with ``reason``. No decoded payload is ever a ``Rejected``, so a publisher cannot forge one
    (a ``_reason`` key in a payload is just an unknown field).
    """

    raw: str
    reason: str


@dataclass(frozen=True, slots=True)
class ReadingRules:
    """What a valid reading is. Ranges map a sensor name to (low, high).

    ``max_future`` / ``max_past`` bound the event time relative to the wall clock (None: not
    checked); ``earliest`` / ``latest`` bound it absolutely for every source. A sensor with a
    range is checked against it; any other sensor's |value| must not exceed ``max_abs_value``.
    """

    max_future: timedelta | None = LIVE_MAX_FUTURE
    max_past: timedelta | None = None
    known_machines: frozenset[str] | None = None
    ranges: dict[str, tuple[float, float]] = field(default_factory=dict)
    max_abs_value: float = MAX_ABS_VALUE
    earliest: datetime = EARLIEST
    latest: datetime = LATEST

    @classmethod
    def live(cls, **kw) -> ReadingRules:
        """Rules of a live source (MQTT, OPC-UA): event time within minutes ahead of the wall
        clock and at most ``LIVE_MAX_PAST`` behind it."""
        return cls(**{"max_future": LIVE_MAX_FUTURE, "max_past": LIVE_MAX_PAST} | kw)

    @classmethod
    def history(cls, **kw) -> ReadingRules:
        """Rules of a history replay: no wall-clock window (the history source refuses times
        beyond the file's own range); the absolute bounds still apply."""
        return cls(**{"max_future": None, "max_past": None} | kw)


@dataclass(frozen=True, slots=True)
class Catalogue:
    """The machines the context knows and, for machines whose type has a recipe, their sensors.

    Built from the context's ``machines`` table (``machine_id``, ``machine_type``) and the
    ``products`` (``product``, ``machine_type``) and ``recipes`` (``product``, ``parameter``)
    tables: a machine's sensors are the recipe parameters of its type's products. A machine
    whose type has no recipe (a recorded machine, say) has no sensor list: only the machine is
    checked.
    """

    machines: frozenset[str]
    sensors: dict[str, frozenset[str]] = field(default_factory=dict)

    @classmethod
    def from_context(cls, context: ErpContext) -> Catalogue | None:
        """The catalogue of ``context``; None when it has no ``machines`` table."""
        records = context.records
        machines = records.get("machines")
        if machines is None or "machine_id" not in machines.columns:
            return None
        try:
            ids = machines["machine_id"].cast(pl.String).drop_nulls()
            catalogue = cls(frozenset(ids.to_list()))
            products, recipes = records.get("products"), records.get("recipes")
            if (
                products is None
                or recipes is None
                or "machine_type" not in machines.columns
                or not {"product", "machine_type"} <= set(products.columns)
                or not {"product", "parameter"} <= set(recipes.columns)
            ):
                return catalogue
            text = pl.col("product").cast(pl.String)
            by_type = (
                products.select(text, pl.col("machine_type").cast(pl.String))
                .join(recipes.select(text, pl.col("parameter").cast(pl.String)), on="product")
                .drop_nulls()
                .group_by("machine_type")
                .agg(pl.col("parameter").unique())
            )
            sensors_of_type = {t: frozenset(p) for t, p in by_type.iter_rows()}
            types = machines.select(
                pl.col("machine_id").cast(pl.String), pl.col("machine_type").cast(pl.String)
            ).drop_nulls()
            sensors = {m: sensors_of_type[t] for m, t in types.iter_rows() if t in sensors_of_type}
            return cls(catalogue.machines, sensors)
        except (pl.exceptions.PolarsError, TypeError, ValueError) as e:
            log.warning("context has no usable machine catalogue (%s): ids checked only", e)
            return None


def validate_readings(
    batch: pl.DataFrame,
    rules: ReadingRules = ReadingRules(),
    source: str = "readings",
    now: datetime | None = None,
    catalogue: Catalogue | None = None,
) -> Checked:
    """Split ``batch`` into valid readings and dead letters, each with the first failed rule.

    Order of the rules: ids (missing, charset and length), machine and sensor known (rules'
    ``known_machines``, then the catalogue), timestamp (missing, absolute bounds, wall-clock
    window), value (missing, NaN, infinite, range or absolute bound).
    """
    missing = [c for c in READING_SCHEMA if c not in batch.columns]
    if missing:
        raise ValueError(f"{source}: batch lacks columns {missing} (has {batch.columns})")
    now = now or utc_now()
    ts, value = pl.col("ts"), pl.col("value")
    checks = time_checks(ts, rules, now)
    checks += [
        (value.is_null(), pl.lit("value missing")),
        (value.is_nan(), pl.lit("value is NaN")),
        (value.is_infinite(), pl.lit("value is infinite")),
    ]
    for sensor, (low, high) in rules.ranges.items():
        checks.append(
            (
                (pl.col("sensor") == sensor) & ((value < low) | (value > high)),
                pl.format(
                    "{} = {} outside [{}, {}]", pl.col("sensor"), value, pl.lit(low), pl.lit(high)
                ),
            )
        )
    beyond = value.abs() > rules.max_abs_value
    if rules.ranges:
        beyond = beyond & ~pl.col("sensor").is_in(list(rules.ranges))
    checks.append(
        (beyond, pl.format("value {} is beyond ±{}", value, pl.lit(f"{rules.max_abs_value:g}")))
    )
    id_reasons = _id_verdicts(batch, rules, catalogue)
    if id_reasons is None:
        # the usual batch breaks no rule: the rules as one boolean column, no reason column
        # (each level of the reasons' when-chain is a text column of the batch's length)
        broken = batch.select(pl.any_horizontal(cond for cond, _ in checks).fill_null(False))
        if not broken.to_series().any():
            return Checked(batch, None)
    reason = pl.when(checks[0][0]).then(checks[0][1])
    for cond, text in checks[1:]:
        reason = reason.when(cond).then(text)
    reason = reason.otherwise(None)
    if id_reasons is not None:
        batch = batch.join(
            id_reasons,
            on=["machine_id", "sensor"],
            how="left",
            nulls_equal=True,
            maintain_order="left",
        )
        reason = pl.coalesce(pl.col(_ID_REASON), reason)
    flagged = batch.with_columns(reason.alias(_REASON))
    bad = flagged[_REASON].is_not_null()
    if not bad.any():
        return Checked(batch.drop(_ID_REASON, strict=False), None)
    ok = flagged.filter(~bad).drop(_REASON, _ID_REASON, strict=False)
    dead = dead_letters(
        flagged.filter(bad).drop(_ID_REASON, strict=False), source, reason_col=_REASON
    )
    return Checked(ok, dead)


def time_checks(ts: pl.Expr, rules: ReadingRules, now: datetime) -> list[tuple[pl.Expr, pl.Expr]]:
    """The event-time rules of ``rules`` as (broken, reason) expressions on ``ts``: missing,
    outside the absolute bounds, too far ahead of or behind ``now`` (readings and signals)."""
    checks: list[tuple[pl.Expr, pl.Expr]] = [
        (ts.is_null(), pl.lit("timestamp missing")),
        (
            ts < rules.earliest,
            pl.format("timestamp {} is before {}", ts, pl.lit(_year(rules.earliest))),
        ),
        (
            ts >= rules.latest,
            pl.format("timestamp {} is after {}", ts, pl.lit(_year(rules.latest))),
        ),
    ]
    if rules.max_future is not None:
        future = pl.lit(str(rules.max_future))
        checks.append(
            (
                ts > now + rules.max_future,
                pl.format("timestamp {} is more than {} in the future", ts, future),
            )
        )
    if rules.max_past is not None:
        past = pl.lit(str(rules.max_past))
        checks.append(
            (
                ts < now - rules.max_past,
                pl.format("timestamp {} is more than {} in the past", ts, past),
            )
        )
    return checks


def _year(t: datetime) -> str:
    return str(t.year) if (t.month, t.day, t.hour, t.minute) == (1, 1, 0, 0) else t.isoformat()


def _id_verdicts(
    batch: pl.DataFrame, rules: ReadingRules, catalogue: Catalogue | None
) -> pl.DataFrame | None:
    """The first failed id rule of each distinct (machine_id, sensor) of ``batch`` that fails
    one; None when every pair passes (the usual case: the batch is left as it is)."""
    # one row per distinct pair, found by a 64-bit hash of the pair (2-3x cheaper than a
    # unique over two string columns); the seeds are drawn per process, so a publisher cannot
    # aim an id at a valid pair's hash
    pair = (pl.col("machine_id").hash(_SEEDS[0]) * _MIX) ^ pl.col("sensor").hash(_SEEDS[1])
    pairs = (
        batch.select("machine_id", "sensor", pair.alias(_ID_REASON))
        .unique(subset=_ID_REASON, keep="any")
        .drop(_ID_REASON)
    )
    bad = [
        (m, s, reason)
        for m, s in pairs.iter_rows()
        if (reason := _id_reason(m, s, rules.known_machines, catalogue)) is not None
    ]
    if not bad:
        return None
    return pl.DataFrame(
        bad,
        schema={"machine_id": pl.String, "sensor": pl.String, _ID_REASON: pl.String},
        orient="row",
    )


def _id_reason(
    machine_id: str | None,
    sensor: str | None,
    known: frozenset[str] | None,
    catalogue: Catalogue | None,
) -> str | None:
    for name, v in (("machine_id", machine_id), ("sensor", sensor)):
        if v is None or v == "":
            return f"{name} missing"
        if not _ID.fullmatch(v):
            return f"{name} {_excerpt(v)} is not an id: {_id_fault(v)}"
    if known is not None and machine_id not in known:
        return f"unknown machine {machine_id}"
    if catalogue is not None:
        if machine_id not in catalogue.machines:
            return f"unknown machine {machine_id}"
        sensors = catalogue.sensors.get(machine_id)
        if sensors is not None and sensor not in sensors:
            return f"unknown sensor {sensor} of machine {machine_id}"
    return None


def _id_fault(v: str) -> str:
    if len(v) > MAX_ID_CHARS:
        return f"is {len(v)} characters long (at most {MAX_ID_CHARS})"
    if not v.strip():
        return "blank"
    if _CONTROL.search(v):
        return "control character"
    return "only A-Z a-z 0-9 and _ . : - are allowed, starting with a letter or digit"


def dead_letters(
    rows: pl.DataFrame, source: str, reason: str | None = None, reason_col: str | None = None
) -> pl.DataFrame:
    """Readings as dead-letter rows: their raw values as JSON (bounded), a reason, a stable id."""
    raw_cols = [c for c in rows.columns if c != reason_col]
    reason_expr = pl.col(reason_col) if reason_col else pl.lit(reason)
    raw = pl.struct(raw_cols).struct.json_encode()
    out = rows.select(
        pl.lit(source).alias("source"),
        _bounded_id(pl.col("machine_id").cast(pl.String)),
        _bounded_id(pl.col("sensor").cast(pl.String)),
        pl.col("ts").cast(READING_SCHEMA["ts"], strict=False),
        pl.col("value").cast(pl.Float64, strict=False),
        pl.when(raw.str.len_chars() > MAX_RAW_CHARS)
        .then(
            pl.concat_str(
                raw.str.slice(0, MAX_RAW_CHARS),
                pl.format("...[truncated, {} chars]", raw.str.len_chars()),
            )
        )
        .otherwise(raw)
        .alias("raw"),
        reason_expr.str.slice(0, MAX_REASON_CHARS).alias("reason"),
    )
    # the id makes a repeated write (recovery replay) land on the same row
    return out.with_columns(
        dead_letter_id=pl.concat_str(["source", "raw", "reason"], separator="|", ignore_nulls=True)
        .hash(seed=17)
        .cast(pl.String),
        received_at=pl.lit(utc_now()).cast(READING_SCHEMA["ts"]),
    )


def _bounded_id(col: pl.Expr) -> pl.Expr:
    """An id as a dead letter shows it: control characters replaced, cut to a bounded length."""
    return col.str.slice(0, MAX_DEAD_ID_CHARS).str.replace_all(r"[\x00-\x1f\x7f]", "\ufffd")


def parse_mqtt_payload(topic: str, payload: bytes) -> dict | Rejected:
    """One MQTT message as a record for :func:`parse_records`, or a :class:`Rejected`.

    The payload must be one JSON object (UTF-8, at most ``MAX_PAYLOAD_BYTES``; no NaN or
    Infinity literals, no integer of more than 64 digits); a JSON array is rejected too (one
    reading per message, as the simulator's publisher sends). When the topic has the form
    ``<prefix>/<line>/<machine>/<sensor>``, the payload's ``machine_id`` and ``sensor`` must be
    the topic's. Never raises: any byte string on any topic is a record or a ``Rejected`` whose
    reason starts with the topic.
    """
    try:
        return _parse_mqtt(topic, payload)
    except Exception as e:
        return Rejected(_raw_bytes(payload), f"{_topic(topic)}: payload unreadable ({_error(e)})")


class _PayloadError(ValueError):
    """A payload the JSON reader refused on the way (a constant or a number out of range)."""


def _nan_literal(name: str) -> object:
    raise _PayloadError(f"{name} is not a JSON number")


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > 64:
        raise _PayloadError(f"integer of {len(text.lstrip('-'))} digits")
    return int(text)


def load_mqtt_json(topic: str, payload: bytes) -> object:
    """The JSON value of one MQTT payload (any JSON type), or a :class:`Rejected`.

    The checks of :func:`parse_mqtt_payload` before its object rule: UTF-8, at most
    ``MAX_PAYLOAD_BYTES``, no NaN or Infinity literals, no integer of more than 64 digits, not
    nested too deeply. Never raises."""
    try:
        return _load_mqtt(topic, payload)
    except Exception as e:
        return Rejected(_raw_bytes(payload), f"{_topic(topic)}: payload unreadable ({_error(e)})")


def mqtt_excerpt(value: object) -> str:
    """A short, valid UTF-8 excerpt of any value, for a reason (an MQTT decoder's)."""
    return _excerpt(value)


def mqtt_raw(payload: object) -> str:
    """A payload as a dead letter keeps it: bounded, valid UTF-8 (an MQTT decoder's)."""
    return _raw_bytes(payload)


def mqtt_where(topic: object) -> str:
    """A topic as a reason starts with it: bounded, valid UTF-8."""
    return _topic(topic)


def _load_mqtt(topic: object, payload: object) -> object:
    where = _topic(topic)
    if isinstance(payload, str):
        payload = payload.encode("utf-8", "surrogatepass")
    if not isinstance(payload, bytes | bytearray | memoryview):
        return Rejected(_raw(payload), f"{where}: payload is a {type(payload).__name__}, not bytes")
    payload = bytes(payload)
    if len(payload) > MAX_PAYLOAD_BYTES:
        return Rejected(
            _raw_bytes(payload),
            f"{where}: payload of {len(payload)} bytes exceeds the limit of {MAX_PAYLOAD_BYTES}",
        )
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as e:
        return Rejected(_raw_bytes(payload), f"{where}: payload is not UTF-8 (byte {e.start})")
    try:
        data = json.loads(text, parse_constant=_nan_literal, parse_int=_bounded_int)
    except RecursionError:
        return Rejected(_raw_bytes(payload), f"{where}: payload is nested too deeply")
    except _PayloadError as e:
        return Rejected(_raw_bytes(payload), f"{where}: payload has {e}")
    except ValueError as e:  # json.JSONDecodeError is one
        return Rejected(_raw_bytes(payload), f"{where}: payload is not JSON ({_excerpt_text(e)})")
    return data


def _parse_mqtt(topic: object, payload: object) -> dict | Rejected:
    where = _topic(topic)
    data = _load_mqtt(topic, payload)
    if isinstance(data, Rejected):
        return data
    if isinstance(payload, str):
        payload = payload.encode("utf-8", "surrogatepass")
    if not isinstance(data, dict):
        kind = "array" if isinstance(data, list) else type(data).__name__
        return Rejected(
            _raw_bytes(payload), f"{where}: payload is a JSON {kind}, not a JSON object"
        )
    levels = topic.split("/") if isinstance(topic, str) else []
    if len(levels) == 4:
        for name, expected in (("machine_id", levels[2]), ("sensor", levels[3])):
            got = data.get(name)
            if isinstance(got, str) and got != expected:
                return Rejected(
                    _raw_bytes(payload),
                    f"{where}: payload {name} {_excerpt(got)} does not match the topic's "
                    f"{_excerpt(expected)}",
                )
    return data


def parse_records(
    records: Iterable[object], source: str = "records", units: dict[str, str] | None = None
) -> Checked:
    """Readings from raw records (decoded JSON, CSV rows): wrong types become dead letters.

    A source that already rejected a record (undecodable bytes, say) passes a
    :class:`Rejected` in its place. Each record should be a dict with ``machine_id``, ``sensor``
    (strings), ``ts`` (ISO 8601 with a time zone, or a timezone-aware datetime) and ``value`` (a
    number); other keys are ignored. Anything else (any Python object: bytes, lists, deep
    nesting, huge integers, strings with lone surrogates) is dead-lettered with the field and a
    short excerpt; nothing raises. The rest are returned as a frame in the reading schema (not
    yet plausibility-checked: see :func:`validate_readings`). With ``units`` (sensor -> unit), a
    record that states a ``unit`` other than its sensor's is dead-lettered too: a value in the
    wrong unit is a wrong value. A dead letter's ``raw`` is valid UTF-8 and at most about
    ``MAX_RAW_CHARS`` long.
    """
    good: list[dict] = []
    dead: list[dict] = []
    for record in records:
        row, reason = _coerce(record, units)
        if reason is None:
            good.append(row)
        else:
            dead.append(
                {
                    "machine_id": _text(record, "machine_id"),
                    "sensor": _text(record, "sensor"),
                    "raw": _raw(record),
                    "reason": _clean(reason, MAX_REASON_CHARS),
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


def _coerce(record: object, units: dict[str, str] | None = None) -> tuple[dict | None, str | None]:
    """A reading row from ``record``, or the reason it is none; never raises."""
    try:
        return _coerce_fields(record, units)
    except Exception as e:
        return None, f"record could not be read ({_error(e)})"


def _coerce_fields(record: object, units: dict[str, str] | None) -> tuple[dict | None, str | None]:
    if isinstance(record, Rejected):
        return None, record.reason if isinstance(record.reason, str) else _excerpt(record.reason)
    if not isinstance(record, dict):
        return None, f"record is a {type(record).__name__}, not an object"
    row = {}
    for name in ("machine_id", "sensor"):
        v = record.get(name)
        if not isinstance(v, str):
            return None, f"{name} {_excerpt(v)} is not a string"
        if not _is_utf8(v):
            return None, f"{name} {_excerpt(v)} has a lone surrogate (not UTF-8)"
        row[name] = v
    ts = record.get("ts")
    if isinstance(ts, str):
        if len(ts) > 64 or not _is_utf8(ts):
            return None, f"ts {_excerpt(ts)} is not an ISO 8601 time"
        try:
            ts = datetime.fromisoformat(ts)
        except ValueError:
            return None, f"ts {_excerpt(record.get('ts'))} is not an ISO 8601 time"
    if not isinstance(ts, datetime):
        return None, f"ts {_excerpt(ts)} is not a time"
    if ts.tzinfo is None or ts.utcoffset() is None:
        return None, f"ts {_excerpt(record.get('ts'))} has no time zone"
    try:
        row["ts"] = ts.astimezone(UTC)
    except (OverflowError, ValueError):
        return None, f"ts {_excerpt(record.get('ts'))} is out of range"
    v = record.get("value")
    if isinstance(v, bool) or not isinstance(v, int | float):
        return None, f"value {_excerpt(v)} is not a number"
    try:
        row["value"] = float(v)
    except OverflowError:
        return None, f"value {_excerpt(v)} is out of range"
    if units:
        expected = units.get(row["sensor"])
        unit = record.get("unit")
        if expected is not None and unit is not None and unit != expected:
            return None, f"unit {_excerpt(unit)} of {_excerpt(row['sensor'])} is not {expected!r}"
    return row, None


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _clean(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters (with a marker) and made valid UTF-8."""
    if len(text) > limit:
        text = f"{text[:limit]}...[truncated, {len(text)} chars]"
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


class _ShortRepr(reprlib.Repr):
    """reprlib, also for integers too long for ``repr`` (int's digit limit)."""

    def repr_int(self, x: int, level: int) -> str:
        if x.bit_length() > 1000:
            return f"<int of about {int(x.bit_length() * 0.30103)} digits>"
        return super().repr_int(x, level)


_short = _ShortRepr()
_short.maxstring = MAX_EXCERPT_CHARS
_short.maxother = MAX_EXCERPT_CHARS
_short.maxlevel = 3
_long = _ShortRepr()
_long.maxstring = _long.maxother = MAX_RAW_CHARS // 4
_long.maxlevel = 20
_long.maxdict = _long.maxlist = _long.maxtuple = _long.maxset = 100


def _excerpt(v: object) -> str:
    """A short, valid UTF-8 excerpt of any object, for a reason."""
    try:
        text = _short.repr(v)
    except Exception:
        text = f"<{type(v).__name__}>"
    return _clean(text, MAX_EXCERPT_CHARS + 10)


def _excerpt_text(e: BaseException) -> str:
    return _clean(str(e), 80)


def _error(e: BaseException) -> str:
    return f"{type(e).__name__}: {_excerpt_text(e)}"


def _topic(topic: object) -> str:
    return _clean(topic, 200) if isinstance(topic, str) else _excerpt(topic)


def _text(record: object, key: str) -> str | None:
    try:
        v = record.get(key) if isinstance(record, dict) else None
    except Exception:
        return None
    if not isinstance(v, str):
        return None
    return _CONTROL.sub("\ufffd", _clean(v, MAX_DEAD_ID_CHARS))


def _raw(record: object) -> str:
    """The record as a dead letter keeps it: JSON when it is JSON, else a repr; bounded, UTF-8."""
    if isinstance(record, Rejected):
        raw = record.raw
        return _clean(raw, MAX_RAW_CHARS) if isinstance(raw, str) else _raw(raw)
    if isinstance(record, bytes | bytearray):
        return _raw_bytes(record)
    if isinstance(record, str):
        return _clean(json.dumps(record[: MAX_RAW_CHARS + 1], ensure_ascii=False), MAX_RAW_CHARS)
    try:
        text = json.dumps(record, default=_long.repr, ensure_ascii=False)
    except Exception:
        try:
            text = _long.repr(record)
        except Exception:
            text = f"<{type(record).__name__}>"
    return _clean(text, MAX_RAW_CHARS)


def _raw_bytes(payload: object) -> str:
    """The start of a payload as text (undecodable bytes escaped), bounded."""
    try:
        head = bytes(payload[: MAX_RAW_CHARS + 1])
        text = head.decode("utf-8", "backslashreplace")  # valid UTF-8 whatever the bytes
        if len(text) > MAX_RAW_CHARS or len(payload) > len(head):
            text = f"{text[:MAX_RAW_CHARS]}...[truncated, {len(payload)} bytes]"
        return text
    except Exception:
        return _excerpt(payload)


def check_batch(
    item: pl.DataFrame | Checked,
    rules: ReadingRules,
    source: str,
    catalogue: Catalogue | None = None,
) -> Checked:
    """Validate a source item: a frame of readings, or a Checked from a parsing source."""
    if isinstance(item, Checked):
        checked = validate_readings(item.ok, rules, source, catalogue=catalogue)
        dead = [d for d in (item.dead, checked.dead) if d is not None]
        return Checked(checked.ok, pl.concat(dead, how="vertical_relaxed") if dead else None)
    return validate_readings(item, rules, source, catalogue=catalogue)
