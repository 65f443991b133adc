"""Fuzz benchmark: generated bad inputs through every parser the pipeline has, and what became
of each.

    .venv/bin/python benchmarks/fuzz.py --n 100000 --seed 1

Sends ``--n`` seeded bad inputs, one section per input kind, each through the path the pipeline
runs for it:

- MQTT payloads (70 %): ``parse_mqtt_payload`` -> ``parse_records`` -> ``validate_readings``
  (live rules, the context's catalogue), in polls of 100 messages with some valid ones mixed
  in; every class of issue 14 plus random bytes and byte mutations of a valid payload;
- history rows (15 %): CSV and Parquet files with bad rows among valid ones, through
  ``read_history`` -> ``validate_readings`` (history rules);
- OPC-UA values (10 %): ``reading_from_value`` -> ``validate_readings`` (live rules);
- context files (5 %): ``parse_context`` of context folders with one bad row or a broken file.

Prints a table per section: tried, taken (bad inputs that are readings: must be 0 except for
random bytes and mutations that an independent oracle finds valid), dead-lettered by reason
class, refused whole (a context load or history file rejected with its reason), crashed (an
exception escaped: must be 0) and accepted although bad (a reading the oracle refuses: must be
0); then the wall time. Exit code 1 when anything crashed or was accepted although bad.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import random
import re
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl

from floorsight.pipelines.validate import (
    ID_PATTERN,
    MAX_PAYLOAD_BYTES,
    Catalogue,
    ReadingRules,
    parse_mqtt_payload,
    parse_records,
    validate_readings,
)
from floorsight.records import READING_SCHEMA

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
LIVE = ReadingRules.live()
SENSORS = {"spindle_temp_c": "degC", "vibration_mm_s": "mm/s"}
MACHINES = ("M01", "M02", "M03")
CATALOGUE = Catalogue(frozenset(MACHINES), {m: frozenset(SENSORS) for m in MACHINES})
_ID = re.compile(ID_PATTERN)

#: reason text -> reason class (first match)
REASON_CLASSES = [
    (r"exceeds the limit", "payload too large"),
    (r"lone surrogate", "lone surrogate"),
    (r"not UTF-8|not valid UTF-8|invalid UTF-8|utf-8", "not UTF-8"),
    (r"nested too deeply", "nested too deeply"),
    (r"not a JSON number", "NaN/Infinity literal"),
    (r"integer of \d+ digits", "integer too long"),
    (r"not a JSON object", "not a JSON object"),
    (r"not JSON", "not JSON"),
    (r"does not match the topic", "topic mismatch"),
    (r"is not a string", "id not a string"),
    (r"is not an id", "id charset/length"),
    (r"machine_id missing|sensor missing", "id missing"),
    (r"unknown machine", "unknown machine"),
    (r"unknown sensor", "unknown sensor"),
    (r"no time zone|naive", "time without zone"),
    (r"before 1970|before \d{4}", "time before 1970"),
    (r"after 2100", "time after 2100"),
    (r"in the future", "time ahead of the clock"),
    (r"in the past", "time too old"),
    (r"outside the file's|time range", "time outside the file's range"),
    (r"OPC-UA's zero time|OPC-UA's largest time|source timestamp", "OPC-UA timestamp"),
    (r"ts .* not|timestamp|not an ISO 8601|not a time|\bts\b", "bad time"),
    (r"^status|status ", "OPC-UA status"),
    (r"value is NaN|NaN", "value NaN"),
    (r"infinite", "value infinite"),
    (r"beyond|out of range|outside \[", "value out of range"),
    (r"not a number|value .*empty|value missing|value", "value not a number"),
    (r"unit ", "wrong unit"),
    (r"could not be read|unreadable", "unreadable record"),
    (r"record is a", "not a record"),
]
_REASON_RE = [(re.compile(p), c) for p, c in REASON_CLASSES]


def reason_class(reason: str) -> str:
    for pattern, cls in _REASON_RE:
        if pattern.search(reason):
            return cls
    return "other: " + reason[:40]


class Tally:
    """What became of one section's inputs."""

    def __init__(self, name: str, classify=reason_class) -> None:
        self.name = name
        self.classify = classify
        self.tried = 0
        self.taken = 0  # bad-looking inputs the oracle finds valid (random bytes, mutations)
        self.dead: Counter[str] = Counter()
        self.refused: Counter[str] = Counter()
        self.crashed: Counter[str] = Counter()
        self.accepted_bad = 0
        self.by_class: Counter[str] = Counter()
        self.valid_rejected = 0
        self.accepted_by: Counter[str] = Counter()
        self.seconds = 0.0

    def dead_frame(self, frame: pl.DataFrame | None, exclude: int = 0) -> None:
        if frame is None:
            return
        for reason in frame["reason"].to_list():
            self.dead[self.classify(reason)] += 1

    def print(self) -> None:
        dead = sum(self.dead.values())
        print(f"\n## {self.name}")
        print(f"{'tried':32s} {self.tried:>9,d}")
        print(f"{'taken (oracle: valid)':32s} {self.taken:>9,d}")
        print(f"{'dead-lettered':32s} {dead:>9,d}")
        for cls, n in self.dead.most_common():
            print(f"  {cls:30s} {n:>9,d}")
        if self.refused:
            print(f"{'refused whole':32s} {sum(self.refused.values()):>9,d}")
            for cls, n in self.refused.most_common():
                print(f"  {cls:30s} {n:>9,d}")
        print(f"{'crashed':32s} {sum(self.crashed.values()):>9,d}")
        for cls, n in self.crashed.most_common():
            print(f"  {cls:30s} {n:>9,d}")
        print(f"{'accepted although bad':32s} {self.accepted_bad:>9,d}")
        for cls, n in self.accepted_by.most_common():
            print(f"  {cls:30s} {n:>9,d}")
        if self.valid_rejected:
            print(f"{'valid ones dead-lettered':32s} {self.valid_rejected:>9,d}")


def plausible(machine_id: str, sensor: str, ts: datetime, value: float, rules) -> bool:
    """An accepted reading as the rules say it must be (stated independently of validate.py)."""
    in_time = datetime(1970, 1, 1, tzinfo=UTC) <= ts < datetime(2100, 1, 1, tzinfo=UTC)
    if rules.max_future is not None:
        in_time = in_time and ts <= NOW + rules.max_future
    if rules.max_past is not None:
        in_time = in_time and ts >= NOW - rules.max_past
    return (
        _ID.fullmatch(machine_id) is not None
        and _ID.fullmatch(sensor) is not None
        and machine_id in CATALOGUE.machines
        and sensor in CATALOGUE.sensors[machine_id]
        and in_time
        and math.isfinite(value)
        and abs(value) <= 1e15
    )


def count_accepted(tally: Tally, ok: pl.DataFrame, n_valid: int, rules) -> int:
    """Accepted rows beyond the inputs the oracle finds valid, or failing the oracle, are
    accepted although bad; returns the good ones accepted."""
    good = 0
    for m, s, ts, v in ok.select("machine_id", "sensor", "ts", "value").iter_rows():
        if plausible(m, s, ts, v, rules):
            good += 1
        else:
            tally.accepted_bad += 1
    tally.accepted_bad += max(0, good - n_valid)
    return min(good, n_valid)


# --- MQTT payloads --------------------------------------------------------------------------


def good_record(rng: random.Random, **kw) -> dict:
    machine = rng.choice(MACHINES)
    sensor = rng.choice(list(SENSORS))
    return {
        "machine_id": machine,
        "sensor": sensor,
        "ts": (NOW - timedelta(seconds=rng.uniform(0, 120))).isoformat(),
        "value": round(rng.gauss(50, 5), 4),
        "unit": SENSORS[sensor],
    } | kw


def topic(record: dict) -> str:
    return f"plant/L1/{record['machine_id']}/{record['sensor']}"


def dump(obj: object) -> bytes:
    return json.dumps(obj, ensure_ascii=True).encode()


def _raw_number(rng: random.Random, text: str) -> tuple[str, bytes]:
    record = good_record(rng)
    payload = dump(record).replace(dump(record["value"]), text.encode(), 1)
    return topic(record), payload


def _with(rng: random.Random, **kw) -> tuple[str, bytes]:
    """A valid record with fields replaced, on the topic of its (replaced) ids: the rule under
    test is hit, not the topic check."""
    record = good_record(rng) | kw
    return topic(record), dump(record)


def _without(rng: random.Random, name: str) -> tuple[str, bytes]:
    record = good_record(rng)
    t = topic(record)
    del record[name]
    return t, dump(record)


def _long_id(rng: random.Random) -> str:
    n = 200_000 if rng.random() < 0.02 else rng.randint(129, 5000)
    return "M" * n


def _nested(rng: random.Random) -> bytes:
    depth = rng.choice([1_000, 5_000, 100_000])
    inner = b"[" * depth + b"]" * depth
    return b'{"machine_id": "M01", "sensor": "spindle_temp_c", "value": ' + inner + b"}"


def _mutation(rng: random.Random) -> tuple[str, bytes]:
    record = good_record(rng)
    data = bytearray(dump(record))
    for _ in range(rng.randint(1, 4)):
        i = rng.randrange(len(data) + 1)
        op = rng.choice(("flip", "insert", "delete", "truncate"))
        if op == "flip" and i < len(data):
            data[i] = rng.randrange(256)
        elif op == "insert":
            data[i:i] = rng.randbytes(rng.randint(1, 8))
        elif op == "delete":
            del data[i : i + rng.randint(1, 8)]
        elif op == "truncate":
            del data[i:]
    return topic(record), bytes(data)


def _field_swap(rng: random.Random) -> tuple[str, bytes]:
    bad = rng.choice(
        [None, True, [], {}, "", "x" * 50, -1, 10**20, {"$gt": ""}, [1.0], "2026-12-01", 0.5]
    )
    name = rng.choice(["machine_id", "sensor", "ts", "value"])
    record = good_record(rng)
    t = topic(record)
    record[name] = bad
    if name == "value" and isinstance(bad, int | float) and not isinstance(bad, bool):
        record["ts"] = "noon"  # a number is a valid value: break the time instead
    return t, dump(record)


MQTT_CLASSES = {
    "whitespace id": lambda r: _with(r, machine_id=r.choice([" ", "   ", "\t", "\u00a0", "\n"])),
    "whitespace sensor": lambda r: _with(r, sensor=r.choice([" ", "  \t "])),
    "NUL in id": lambda r: _with(r, machine_id="M0\x001"),
    "control character in id": lambda r: _with(r, sensor="spindle\x1btemp"),
    "long id": lambda r: _with(r, machine_id=_long_id(r)),
    "unknown machine": lambda r: _with(r, machine_id=f"M{r.randint(100, 999)}"),
    "unknown sensor": lambda r: _with(r, sensor=r.choice(["zz", "spindle_temp_f", "status2"])),
    "topic mismatch": lambda r: (
        "plant/L1/M02/vibration_mm_s",
        dump(good_record(r, machine_id="M01", sensor="spindle_temp_c")),
    ),
    "year 2120": lambda r: _with(r, ts="2120-01-01T00:00:00+00:00"),
    "before 1970": lambda r: _with(r, ts=r.choice(["1969-12-31T23:59:59Z", "0001-01-01T00:00Z"])),
    "a day ahead": lambda r: _with(r, ts=(NOW + timedelta(days=1)).isoformat()),
    "31 days old": lambda r: _with(r, ts=(NOW - timedelta(days=31)).isoformat()),
    "naive time": lambda r: _with(r, ts="2026-12-01T11:59:00"),
    "bad time text": lambda r: _with(r, ts=r.choice(["noon", "", "2026-13-01T00:00Z", "9" * 99])),
    "+-1.8e308 (inf)": lambda r: _raw_number(r, r.choice(["1.8e308", "-1.8e308", "1e999"])),
    "+-1.7e308": lambda r: _with(r, value=r.choice([1.7e308, -1.7e308])),
    "1e16": lambda r: _with(r, value=r.choice([1e16, -3e20])),
    "NaN/Infinity literal": lambda r: _raw_number(r, r.choice(["NaN", "Infinity", "-Infinity"])),
    "5,000-digit integer": lambda r: _raw_number(r, "9" * 5000),
    "65-digit integer": lambda r: _raw_number(r, "1" * 65),
    "deep nesting": lambda r: ("plant/L1/M01/spindle_temp_c", _nested(r)),
    "lone surrogate": lambda r: _with(r, machine_id=r.choice(["M\ud800", "\udfff"])),
    "invalid UTF-8": lambda r: ("plant/L1/M01/spindle_temp_c", b'{"machine_id": "M\xff\xfe01"}'),
    "gigantic payload": lambda r: (
        "plant/L1/M01/spindle_temp_c",
        b'{"x": "' + b"a" * (MAX_PAYLOAD_BYTES + r.randint(1, 200_000)) + b'"}',
    ),
    "_reason forgery": lambda r: _with(r, value="hot", _reason="all fine"),
    "JSON array or scalar": lambda r: (
        "plant/L1/M01/spindle_temp_c",
        r.choice([b"[" + dump(good_record(r)) + b"]", b'"M01"', b"42", b"null", b"true"]),
    ),
    "missing field": lambda r: _without(r, r.choice(["ts", "value", "machine_id", "sensor"])),
    "wrong field type": _field_swap,
    "wrong unit": lambda r: _with(r, unit="degF"),
    "empty payload": lambda r: ("plant/L1/M01/spindle_temp_c", b""),
    "random bytes": lambda r: (
        r.choice(["plant/L1/M01/spindle_temp_c", "", "#", "a/b"]),
        r.randbytes(r.randint(0, 300)),
    ),
    "byte mutation": _mutation,
}
#: classes whose inputs may be valid by chance: an oracle decides
ORACLE_CLASSES = {"random bytes", "byte mutation"}


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > 64:
        raise ValueError("long int")
    return int(text)


def _no_constant(name: str) -> object:
    raise ValueError(name)


def oracle_mqtt(t: str, payload: bytes) -> bool:
    """Is this message a valid reading? Stated from the contract, not from validate.py."""
    if len(payload) > MAX_PAYLOAD_BYTES:
        return False
    try:
        data = json.loads(
            payload.decode("utf-8"), parse_int=_bounded_int, parse_constant=_no_constant
        )
    except (ValueError, RecursionError):
        return False
    if not isinstance(data, dict):
        return False
    m, s, ts, v = (data.get(k) for k in ("machine_id", "sensor", "ts", "value"))
    if not (isinstance(m, str) and isinstance(s, str) and isinstance(ts, str)):
        return False
    levels = t.split("/")
    if len(levels) == 4 and (levels[2], levels[3]) != (m, s):
        return False
    if "unit" in data and data["unit"] is not None and data["unit"] != SENSORS.get(s, data["unit"]):
        return False
    try:
        when = datetime.fromisoformat(ts)
        if len(ts) > 64 or when.tzinfo is None:
            return False
        when = when.astimezone(UTC)
        value = float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None
    except (ValueError, OverflowError):
        return False
    return value is not None and plausible(m, s, when, value, LIVE)


def fuzz_mqtt(n: int, rng: random.Random) -> Tally:
    tally = Tally("MQTT payloads (parse_mqtt_payload -> parse_records -> validate_readings)")
    classes = list(MQTT_CLASSES)
    done = 0
    while done < n:
        size = min(100, n - done + 10)
        messages, n_valid, n_bad = [], 0, 0
        for _ in range(size):
            if rng.random() < 0.1 or n_bad >= n - done:  # valid ones mixed in
                record = good_record(rng)
                messages.append((topic(record), dump(record)))
                n_valid += 1
                continue
            cls = rng.choice(classes)
            t, payload = MQTT_CLASSES[cls](rng)
            tally.by_class[cls] += 1
            n_bad += 1
            if cls in ORACLE_CLASSES and oracle_mqtt(t, payload):
                n_valid += 1
                tally.taken += 1
            messages.append((t, payload))
        tally.tried += n_bad
        done += n_bad
        try:
            parsed = parse_records([parse_mqtt_payload(t, p) for t, p in messages], "mqtt", SENSORS)
            checked = validate_readings(parsed.ok, LIVE, "mqtt", now=NOW, catalogue=CATALOGUE)
        except Exception as e:  # must not happen: counted, never raised
            tally.crashed[type(e).__name__] += n_bad
            continue
        dead = [d for d in (parsed.dead, checked.dead) if d is not None]
        accounted = checked.ok.height + sum(d.height for d in dead)
        if accounted != len(messages):
            tally.crashed[f"lost {len(messages) - accounted}"] += 1
        for d in dead:
            tally.dead_frame(d)
        good = count_accepted(tally, checked.ok, n_valid, LIVE)
        # valid messages dead-lettered (false alarms of the parser; the fuzzed classes aside)
        tally.valid_rejected += n_valid - good
    return tally


# --- history files ---------------------------------------------------------------------------

HISTORY_T0 = datetime(2026, 1, 5, tzinfo=UTC)

HISTORY_BAD = {
    "time 'noon'": lambda r: {"ts": "noon"},
    "empty time": lambda r: {"ts": ""},
    "naive time": lambda r: {"ts": "2026-01-05T00:10:00"},
    "year 2100": lambda r: {"ts": "2100-06-01T00:00:00+00:00"},
    "before 1970": lambda r: {"ts": "1960-01-01T00:00:00+00:00"},
    "text value": lambda r: {"value": r.choice(["hot", "1,5", "--"])},
    "empty value": lambda r: {"value": ""},
    "NaN value": lambda r: {"value": r.choice(["NaN", "nan", "inf", "-inf"])},
    "5,000-digit value": lambda r: {"value": "9" * 5000},
    "1.7e308 value": lambda r: {"value": "1.7e308"},
    "blank id": lambda r: {"machine_id": r.choice(["", " ", "\t"])},
    "NUL in id": lambda r: {"machine_id": "M0\x001"},
    "long id": lambda r: {"sensor": "s" * r.randint(129, 3000)},
    "unknown machine": lambda r: {"machine_id": "M999"},
    "unknown sensor": lambda r: {"sensor": "zz"},
}


def fuzz_history(n: int, rng: random.Random, work: Path) -> Tally:
    tally = Tally("history rows (read_history -> validate_readings), CSV and Parquet")
    from floorsight.pipelines.replay import HistoryError, read_history

    rules = ReadingRules.history()
    classes = list(HISTORY_BAD)
    done, k = 0, 0
    while done < n:
        rows, n_bad = [], 0
        for i in range(1000):
            row = {
                "machine_id": MACHINES[i % 3],
                "sensor": list(SENSORS)[i // 3 % 2],
                "ts": (HISTORY_T0 + timedelta(seconds=i)).isoformat(),
                "value": repr(round(rng.gauss(50, 5), 4)),
            }
            if i % 20 == 7 and done + n_bad < n:
                cls = rng.choice(classes)
                row |= HISTORY_BAD[cls](rng)
                tally.by_class[cls] += 1
                n_bad += 1
            rows.append(row)
        frame = pl.DataFrame(rows, schema=dict.fromkeys(READING_SCHEMA, pl.String))
        k += 1
        path = work / (f"h{k}.csv" if k % 2 else f"h{k}.parquet")
        if k % 2:
            frame.write_csv(path)
        else:
            frame.write_parquet(path)
        tally.tried += n_bad
        done += n_bad
        try:
            read = read_history(path)
            checked = validate_readings(read.ok, rules, "history", now=NOW, catalogue=CATALOGUE)
        except HistoryError as e:
            tally.refused[reason_class(str(e))] += n_bad
            continue
        except Exception as e:
            tally.crashed[type(e).__name__] += n_bad
            continue
        finally:
            path.unlink()
        dead = [d for d in (read.dead, checked.dead) if d is not None]
        if checked.ok.height + sum(d.height for d in dead) != len(rows):
            tally.crashed["rows lost"] += 1
        for d in dead:
            tally.dead_frame(d)
        count_accepted(tally, checked.ok, len(rows) - n_bad, rules)
        # the file's own range: nothing accepted far outside the valid rows' times
        outside = checked.ok.filter(
            (pl.col("ts") < HISTORY_T0 - timedelta(minutes=5))
            | (pl.col("ts") > HISTORY_T0 + timedelta(seconds=1000, minutes=5))
        )
        tally.accepted_bad += outside.height
    return tally


# --- OPC-UA values ---------------------------------------------------------------------------


def fuzz_opcua(n: int, rng: random.Random) -> Tally:
    tally = Tally("OPC-UA values (reading_from_value -> validate_readings)")
    from asyncua import ua

    from floorsight.pipelines.opcua_source import reading_from_value

    now = NOW - timedelta(seconds=1)
    values = {
        "text": lambda: rng.choice(["hot", "", "\ud800", "1.0"]),
        "bytes": lambda: rng.randbytes(8),
        "None": lambda: None,
        "bool": lambda: rng.choice([True, False]),
        "NaN": lambda: math.nan,
        "infinite": lambda: rng.choice([math.inf, -math.inf]),
        "huge int": lambda: 10**5000,
        "1.7e308": lambda: 1.7e308,
        "array": lambda: [1.0, 2.0],
        "object": object,
    }
    times = {
        "no timestamp": lambda: None,
        "OPC-UA zero time": lambda: datetime(1601, 1, 1, tzinfo=UTC),
        "OPC-UA max time": lambda: datetime(9999, 12, 31, tzinfo=UTC),
        "year 2120": lambda: datetime(2120, 1, 1, tzinfo=UTC),
        "before 1970": lambda: datetime(1965, 1, 1, tzinfo=UTC),
        "a day ahead": lambda: NOW + timedelta(days=1),
        "text timestamp": lambda: "2026-12-01T12:00Z",
    }
    statuses = {"bad status": lambda: ua.StatusCode(ua.StatusCodes.BadSensorFailure)}
    ids = {
        "blank id": lambda: (" ", "spindle_temp_c"),
        "NUL in id": lambda: ("M0\x001", "spindle_temp_c"),
        "unknown machine": lambda: ("M999", "spindle_temp_c"),
        "unknown sensor": lambda: ("M01", "zz"),
    }
    done = 0
    while done < n:
        readings, dead, size = [], 0, min(100, n - done)
        for _ in range(size):
            kind = rng.choice(["value", "time", "status", "id"])
            machine, sensor, value, ts, status = "M01", "spindle_temp_c", 42.0, now, None
            if kind == "value":
                cls = rng.choice(list(values))
                value = values[cls]()
            elif kind == "time":
                cls = rng.choice(list(times))
                ts = times[cls]()
            elif kind == "status":
                cls = rng.choice(list(statuses))
                status = statuses[cls]()
            else:
                cls = rng.choice(list(ids))
                machine, sensor = ids[cls]()
            tally.by_class[cls] += 1
            try:
                reading, reason = reading_from_value(machine, sensor, value, ts, status=status)
            except Exception as e:
                tally.crashed[type(e).__name__] += 1
                continue
            if reading is None:
                tally.dead[reason_class(reason or "")] += 1
                dead += 1
            else:
                readings.append(reading)
        tally.tried += size
        done += size
        try:
            frame = pl.DataFrame(readings, schema=READING_SCHEMA)
            checked = validate_readings(frame, LIVE, "opcua", now=NOW, catalogue=CATALOGUE)
        except Exception as e:
            tally.crashed[type(e).__name__] += len(readings)
            continue
        tally.dead_frame(checked.dead)
        count_accepted(tally, checked.ok, 0, LIVE)
    return tally


# --- context files ---------------------------------------------------------------------------


def _context_files() -> dict[str, bytes]:
    wo = pl.DataFrame(
        {
            "work_order": [f"WO-{i}" for i in range(6)],
            "machine_id": [MACHINES[i % 3] for i in range(6)],
            "product": ["P-100"] * 6,
            "material_lot": ["L-1"] * 6,
            "start": [(HISTORY_T0 + timedelta(hours=2 * (i // 3))).isoformat() for i in range(6)],
            "end": [(HISTORY_T0 + timedelta(hours=2 * (i // 3) + 2)).isoformat() for i in range(6)],
        }
    )
    spec = pl.DataFrame(
        {
            "product": ["P-100"],
            "characteristic": ["bore_diameter_mm"],
            "lsl": [24.98],
            "target": [25.0],
            "usl": [25.02],
        }
    )
    out = {}
    for name, frame in (("work_orders.csv", wo), ("spec_limits.csv", spec)):
        buf = io.BytesIO()
        frame.write_csv(buf)
        out[name] = buf.getvalue()
    return out


CONTEXT_BAD = {
    "end before start": (
        b"WO-1,M02,P-100,L-1,",
        b"WO-X,M02,P-100,L-1,2026-01-05T05:00:00+00:00,2026-01-05T04:00:00+00:00",
    ),
    "bad time": (None, b"WO-X,M01,P-100,L-1,noon,2026-01-05T04:00:00+00:00"),
    "empty work order": (
        None,
        b",M01,P-100,L-1,2026-01-05T10:00:00+00:00,2026-01-05T11:00:00+00:00",
    ),
    "NUL in a cell": (
        None,
        b"WO-X,M0\x001,P-100,L-1,2026-01-05T10:00:00+00:00,2026-01-05T11:00:00+00:00",
    ),
    "invalid UTF-8": (
        None,
        b"WO-X,M\xff1,P-100,L-1,2026-01-05T10:00:00+00:00,2026-01-05T11:00:00+00:00",
    ),
    "missing column": (None, b"WO-X,M01"),
    "duplicate work order": (
        None,
        b"WO-1,M01,P-100,L-1,2026-01-05T10:00:00+00:00,2026-01-05T11:00:00+00:00",
    ),
    "half-written file": (None, None),
    "no end column": (None, None),
    "empty lsl": (None, None),
}


def fuzz_context(n: int, rng: random.Random) -> Tally:
    tally = Tally("context files (parse_context)", _context_reason)
    from floorsight.pipelines.context import ContextLoadError, parse_context

    base = _context_files()
    for _ in range(n):
        cls = rng.choice(list(CONTEXT_BAD))
        files = dict(base)
        _, line = CONTEXT_BAD[cls]
        if cls == "half-written file":
            wo = files["work_orders.csv"]
            files["work_orders.csv"] = wo[: rng.randint(1, len(wo) - 1)]
        elif cls == "no end column":
            files["work_orders.csv"] = b"\n".join(
                row.rsplit(b",", 1)[0] for row in files["work_orders.csv"].splitlines()
            )
        elif cls == "empty lsl":
            files["spec_limits.csv"] = files["spec_limits.csv"].replace(b"24.98", b"")
        else:
            files["work_orders.csv"] = files["work_orders.csv"].rstrip(b"\n") + b"\n" + line + b"\n"
        tally.by_class[cls] += 1
        tally.tried += 1
        try:
            context, dead = parse_context(files)
        except ContextLoadError as e:
            tally.refused[_context_reason(str(e))] += 1
            continue
        except Exception as e:
            tally.crashed[type(e).__name__] += 1
            continue
        wo, spec = context.work_orders, context.spec_limits
        kept_bad = (
            wo.filter(
                pl.col("work_order").is_in(["WO-X", ""])
                | pl.col("machine_id").str.contains("\x00")
                | pl.col("start").is_null()
                | pl.col("end").is_null()
            ).height
            + spec.filter(pl.col("lsl").is_null()).height
            + (wo.height - wo["work_order"].n_unique())
        )
        if kept_bad:
            tally.accepted_bad += 1
            tally.accepted_by[cls] += 1
        elif dead is not None:
            tally.dead_frame(dead)
        elif cls == "half-written file":
            tally.taken += 1  # cut at a row's end: a shorter file of good rows
        else:
            tally.accepted_bad += 1  # loaded as if nothing were wrong
            tally.accepted_by[cls] += 1
    return tally


def _context_reason(text: str) -> str:
    for pattern, cls in (
        (r"has columns|lacks|column|file is missing", "missing column or file"),
        (r"UTF-8|utf-8|unreadable|cannot be read|not a readable", "unreadable file"),
        (r"is not after start", "end before start"),
        (r"is not a machine id|is not an id", "id charset/length"),
        (r"not a time", "bad time"),
        (r"unique|duplicate", "duplicate key"),
        (r"missing|empty|null", "empty required cell"),
    ):
        if re.search(pattern, text):
            return cls
    return "rejected: " + text.splitlines()[0][:50]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100_000, help="bad inputs in all")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    began = time.perf_counter()
    shares = {"mqtt": 0.70, "history": 0.15, "opcua": 0.10, "context": 0.05}
    counts = {k: int(args.n * v) for k, v in shares.items()}
    counts["mqtt"] += args.n - sum(counts.values())
    tallies = []
    with tempfile.TemporaryDirectory() as work:
        for name, run in (
            ("mqtt", lambda k: fuzz_mqtt(k, rng)),
            ("history", lambda k: fuzz_history(k, rng, Path(work))),
            ("opcua", lambda k: fuzz_opcua(k, rng)),
            ("context", lambda k: fuzz_context(k, rng)),
        ):
            t = time.perf_counter()
            tally = run(counts[name])
            tally.seconds = time.perf_counter() - t
            tallies.append(tally)
    wall = time.perf_counter() - began
    print(f"# fuzz: --n {args.n} --seed {args.seed}")
    for tally in tallies:
        tally.print()
        print(f"{'seconds':32s} {tally.seconds:>9.1f}")
    total = {
        "tried": sum(t.tried for t in tallies),
        "taken": sum(t.taken for t in tallies),
        "dead-lettered": sum(sum(t.dead.values()) for t in tallies),
        "refused whole": sum(sum(t.refused.values()) for t in tallies),
        "crashed": sum(sum(t.crashed.values()) for t in tallies),
        "accepted although bad": sum(t.accepted_bad for t in tallies),
    }
    print("\n## all parsers")
    for k, v in total.items():
        print(f"{k:32s} {v:>9,d}")
    print(f"{'wall time (s)':32s} {wall:>9.1f}")
    return 1 if total["crashed"] or total["accepted although bad"] else 0


if __name__ == "__main__":
    sys.exit(main())
