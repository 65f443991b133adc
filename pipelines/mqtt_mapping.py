"""How MQTT messages become readings and machine signals: the decoder protocol and its JSON forms.

The MQTT source (``pipelines/mqtt_source.py``) knows nothing of payloads: it asks an
:class:`MqttDecoder` which topic filters to subscribe, hands it every journaled message and takes
what comes back, per message a list of

- readings ``{"machine_id", "sensor", "ts", "value"}`` (optionally ``"unit"``), checked by
  ``validate.parse_records`` and ``validate_readings``;
- signals ``{"machine_id", "signal", "ts", "value", "text"}`` (a dict with a ``"signal"`` key;
  ``signal`` a :class:`floorsight.records.SignalKind` value), emitted as ``records.Signals``;
- :class:`floorsight.pipelines.validate.Rejected` for what cannot be read, with a reason that
  starts with the topic.

``decode`` never raises (the source still catches, and makes a dead letter of the message, if it
does). ``ts`` is a timezone-aware datetime, an ISO 8601 string with an offset, or
:data:`RECEIVE_TIME`: the source puts in the time the message reached the journal, and counts
it. A decoder's :meth:`MqttDecoder.state` (JSON-able: Sparkplug's aliases and sequence numbers,
say) is snapshotted with the journal position it belongs to and handed back to
:meth:`MqttDecoder.restore` on a resume.

Decoders here: :class:`JsonDecoder` (floorsight's own topics and JSON, the default) and
:class:`MappedJsonDecoder` (the plant's own topics, ``--topic``, and payloads, ``--payload-map``).
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol, runtime_checkable

from floorsight.pipelines.validate import (
    Rejected,
    load_mqtt_json,
    mqtt_excerpt,
    mqtt_raw,
    mqtt_where,
    parse_mqtt_payload,
)
from floorsight.records import SignalKind

_SIGNAL_KINDS = frozenset(k.value for k in SignalKind)

#: the topics floorsight's own publisher (the simulator) sends to
DEFAULT_TOPIC = "plant/#"
#: the template of those topics, for a payload map without ``--topic``
DEFAULT_TEMPLATE = "plant/{line}/{machine_id}/{sensor}"


class _ReceiveTime:
    """The marker of a record without an event time of its own (see :data:`RECEIVE_TIME`)."""

    _instance: _ReceiveTime | None = None

    def __new__(cls) -> _ReceiveTime:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "RECEIVE_TIME"

    def __reduce__(self) -> str:
        return "RECEIVE_TIME"


#: a record's ``ts`` when its message carries no event time and the decoder's rule is to take the
#: receive time: the source replaces it with the time the message was journaled. No payload can
#: produce it (decoded JSON holds only str, numbers, lists, dicts, bools and None).
RECEIVE_TIME = _ReceiveTime()


@runtime_checkable
class MqttDecoder(Protocol):
    """Turns MQTT messages into readings, signals and rejections (see the module docstring)."""

    def subscriptions(self) -> list[str]:
        """The topic filters to subscribe (without a ``$share/GROUP/`` prefix)."""
        ...

    def decode(self, topic: str, payload: bytes) -> list[dict | Rejected]:
        """What one message holds: reading dicts, signal dicts and rejections; never raises."""
        ...

    def state(self) -> dict:
        """The decoder's state as JSON-able data, snapshotted with the journal position."""
        ...

    def restore(self, state: dict) -> None:
        """Take back a :meth:`state` (on a resume from a snapshot)."""
        ...


class JsonDecoder:
    """floorsight's own JSON: one reading per message (``validate.parse_mqtt_payload``).

    Messages on a ``.../status`` topic (the simulator's publisher's MES status notes) are
    skipped. The simulator's machine signals, ``<prefix>/<line>/<machine>/<kind>`` with ``kind``
    ``state``, ``good_count`` or ``scrap_count`` and ``{"machine_id", "signal": kind, "ts",
    "value"}``, are signals; on any other topic a ``signal`` key is an unknown field like any
    other, so a reading's payload cannot pass for a signal.
    """

    def __init__(self, topics: list[str] | None = None) -> None:
        self.topics = topics

    def subscriptions(self) -> list[str]:
        return list(self.topics or [DEFAULT_TOPIC])

    def decode(self, topic: str, payload: bytes) -> list[dict | Rejected]:
        if isinstance(topic, str) and topic.endswith("/status"):
            return []
        record = parse_mqtt_payload(topic, payload)
        if isinstance(record, dict) and "signal" in record:
            kind = topic.rpartition("/")[2] if isinstance(topic, str) else None
            if kind in _SIGNAL_KINDS and record["signal"] == kind:
                # the simulator's signal topics: <prefix>/<line>/<machine>/state|good_count|...
                value = record.get("value")
                text = value if isinstance(value, str) else None
                return [
                    {
                        "machine_id": record.get("machine_id"),
                        "signal": kind,
                        "ts": record.get("ts"),
                        "value": None if text is not None else value,
                        "text": text,
                    }
                ]
            record = {k: v for k, v in record.items() if k != "signal"}
        return [record]

    def state(self) -> dict:
        return {}

    def restore(self, state: dict) -> None:
        pass


class MappingError(ValueError):
    """A topic template or payload map that cannot work: the message names the key and why."""


#: the placeholders a topic template may hold (each a whole level)
PLACEHOLDERS = ("line", "machine_id", "sensor")
#: how the event time field reads: an ISO 8601 text with an offset, or a number since the epoch
TIME_FORMATS = {"iso": None, "epoch_s": 1, "epoch_ms": 1e3, "epoch_us": 1e6, "epoch_ns": 1e9}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MISSING = object()


@dataclass(frozen=True)
class TopicTemplate:
    """A topic with placeholders, ``factory/{line}/{machine_id}/{sensor}``.

    A level is a placeholder (``{line}``, ``{machine_id}``, ``{sensor}``), ``+`` (any one level,
    not kept) or literal text; ``#`` as the last level takes any rest. The subscription filter is
    the template with each placeholder as ``+``.
    """

    template: str
    levels: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        levels = tuple(self.template.split("/"))
        seen: set[str] = set()
        for i, level in enumerate(levels):
            if level.startswith("{") and level.endswith("}"):
                name = level[1:-1]
                if name not in PLACEHOLDERS:
                    raise MappingError(
                        f"--topic {self.template!r}: unknown placeholder {level} (use "
                        f"{', '.join('{' + p + '}' for p in PLACEHOLDERS)})"
                    )
                if name in seen:
                    raise MappingError(f"--topic {self.template!r}: {level} appears twice")
                seen.add(name)
            elif "{" in level or "}" in level:
                raise MappingError(
                    f"--topic {self.template!r}: a placeholder must be a whole level, got {level!r}"
                )
            elif level == "#" and i != len(levels) - 1:
                raise MappingError(f"--topic {self.template!r}: '#' must be the last level")
            elif ("+" in level and level != "+") or ("#" in level and level != "#"):
                raise MappingError(f"--topic {self.template!r}: a wildcard must be a whole level")
        if not self.template or any(c in self.template for c in "\0"):
            raise MappingError(f"--topic {self.template!r} is not a topic")
        object.__setattr__(self, "levels", levels)

    @property
    def names(self) -> frozenset[str]:
        """The placeholders in the template."""
        return frozenset(lvl[1:-1] for lvl in self.levels if lvl.startswith("{"))

    @property
    def filter(self) -> str:
        """The subscription filter: each placeholder as ``+``."""
        return "/".join("+" if lvl.startswith("{") else lvl for lvl in self.levels)

    def match(self, topic: str) -> dict[str, str] | None:
        """The placeholders' values in ``topic``, or None when it does not fit the template."""
        got = topic.split("/")
        levels = self.levels
        if levels[-1] == "#":
            if len(got) < len(levels) - 1:
                return None
            levels, got = levels[:-1], got[: len(levels) - 1]
        elif len(got) != len(levels):
            return None
        out: dict[str, str] = {}
        for want, have in zip(levels, got, strict=True):
            if want.startswith("{"):
                out[want[1:-1]] = have
            elif want not in ("+", have):
                return None
        return out


@dataclass(frozen=True)
class PayloadMap:
    """Where a reading's parts sit in a JSON payload (dotted paths; see docs/connect.md).

    One reading per message (``value``), or several (``sensors``: ``"*"`` for every numeric
    field of the object at ``fields``, or a list of field names). ``time`` and ``time_format``
    read the event time; a message without one takes its receive time (``missing_time =
    "receive"``) or is a dead letter (``"reject"``). ``quality`` and ``good``: the field that
    says whether the value is good, and its good values. ``signals`` maps a signal kind
    (``state``, ``good_count``, ``scrap_count``) to the field or sensor name that carries it.
    """

    value: str = "value"
    time: str | None = "ts"
    time_format: str = "iso"
    missing_time: str = "receive"
    unit: str | None = "unit"
    quality: str | None = None
    good: tuple[object, ...] = ()
    machine_id: str | None = "machine_id"
    sensor: str | None = "sensor"
    sensors: str | tuple[str, ...] | None = None
    fields: str = ""
    signals: dict[str, str] = field(default_factory=dict)

    _KEYS = frozenset(
        (
            *("value", "time", "time_format", "missing_time", "unit", "quality", "good"),
            *("machine_id", "sensor", "sensors", "fields", "signals"),
        )
    )

    @classmethod
    def load(cls, path: Path) -> PayloadMap:
        """The map in a TOML file; a wrong key or value is a :class:`MappingError` naming it."""
        try:
            data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise MappingError(f"--payload-map {path}: no such file") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
            raise MappingError(f"--payload-map {path}: not TOML ({e})") from None
        return cls.from_dict(data, str(path))

    @classmethod
    def from_dict(cls, data: dict, where: str = "payload map") -> PayloadMap:
        unknown = sorted(set(data) - cls._KEYS)
        if unknown:
            raise MappingError(
                f"{where}: unknown key {unknown[0]!r} (known: {', '.join(sorted(cls._KEYS))})"
            )
        kw: dict = {}
        for key in ("value", "time", "unit", "quality", "machine_id", "sensor", "fields"):
            if key in data:
                if not isinstance(data[key], str):
                    raise MappingError(f"{where}: {key} must be a dotted path (a string)")
                kw[key] = data[key] if data[key] or key in ("value", "fields") else None
        if data.get("time_format", "iso") not in TIME_FORMATS:
            raise MappingError(
                f"{where}: time_format {data['time_format']!r} is not one of "
                f"{', '.join(TIME_FORMATS)}"
            )
        kw["time_format"] = data.get("time_format", "iso")
        if data.get("missing_time", "receive") not in ("receive", "reject"):
            raise MappingError(f"{where}: missing_time must be 'receive' or 'reject'")
        kw["missing_time"] = data.get("missing_time", "receive")
        good = data.get("good", [])
        good = good if isinstance(good, list) else [good]
        if "quality" in data and not good:
            raise MappingError(f"{where}: quality needs good = [the field's good values]")
        kw["good"] = tuple(good)
        sensors = data.get("sensors")
        if sensors is not None:
            if sensors != "*" and not (
                isinstance(sensors, list) and sensors and all(isinstance(x, str) for x in sensors)
            ):
                raise MappingError(f'{where}: sensors must be "*" or a list of field names')
            kw["sensors"] = sensors if sensors == "*" else tuple(sensors)
        signals = data.get("signals", {})
        if not isinstance(signals, dict):
            raise MappingError(f'{where}: [signals] must be a table (state = "field")')
        kinds = {k.value for k in SignalKind}
        for kind, name in signals.items():
            if kind not in kinds:
                raise MappingError(
                    f"{where}: [signals] {kind!r} is not one of {', '.join(sorted(kinds))}"
                )
            if not isinstance(name, str) or not name:
                raise MappingError(f"{where}: [signals] {kind} must name a field or sensor")
        kw["signals"] = dict(signals)
        return cls(**kw)


def _path(data: object, path: str) -> object:
    """The value at a dotted path (``a.b.0``; "" is the payload itself), or ``_MISSING``."""
    if not path:
        return data
    for part in path.split("."):
        if isinstance(data, dict):
            data = data.get(part, _MISSING)
        elif isinstance(data, list) and part.isdigit() and int(part) < len(data):
            data = data[int(part)]
        else:
            return _MISSING
        if data is _MISSING:
            return _MISSING
    return data


def _number(v: object) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


class MappedJsonDecoder:
    """The plant's own topics (:class:`TopicTemplate`) and JSON payloads (:class:`PayloadMap`).

    The machine and sensor come from the topic's placeholders, else from the payload's
    ``machine_id`` / ``sensor`` fields (or, with ``sensors``, from the field names). Each reading
    keeps its machine, sensor, event time, value and unit; a value whose sensor is named in
    ``[signals]`` is a signal instead. A topic that fits no template, a missing or non-numeric
    value, an unreadable time or a bad quality is a dead letter naming the topic and the field.
    """

    def __init__(self, templates: list[str] | None = None, mapping: PayloadMap | None = None):
        self.templates = [TopicTemplate(t) for t in (templates or [DEFAULT_TEMPLATE])]
        self.mapping = mapping or PayloadMap()
        m = self.mapping
        for t in self.templates:
            if "machine_id" not in t.names and not m.machine_id:
                raise MappingError(
                    f"--topic {t.template!r}: no {{machine_id}}, and the payload map names no "
                    "machine_id field: say where the machine is"
                )
            if "sensor" not in t.names and not m.sensor and m.sensors is None:
                raise MappingError(
                    f"--topic {t.template!r}: no {{sensor}}, and the payload map names neither a "
                    "sensor field nor sensors: say where the sensor is"
                )
        self._signal_of = {name: kind for kind, name in m.signals.items()}
        self._scale = TIME_FORMATS[m.time_format]
        skip = {m.time, m.unit, m.quality, m.machine_id, m.sensor}
        self._not_sensors = {p.rpartition(".")[2] for p in skip if p}

    def subscriptions(self) -> list[str]:
        return list(dict.fromkeys(t.filter for t in self.templates))

    def state(self) -> dict:
        return {}

    def restore(self, state: dict) -> None:
        pass

    def decode(self, topic: str, payload: bytes) -> list[dict | Rejected]:
        try:
            return self._decode(topic, payload)
        except Exception as e:  # a payload this code did not foresee: its dead letter
            why = f"{mqtt_where(topic)}: payload unreadable ({type(e).__name__})"
            return [Rejected(mqtt_raw(payload), why)]

    def _decode(self, topic: str, payload: bytes) -> list[dict | Rejected]:
        where = mqtt_where(topic)

        def no(why: str) -> list[dict | Rejected]:
            return [Rejected(mqtt_raw(payload), f"{where}: {why}")]

        parts = None
        for t in self.templates:
            if (parts := t.match(topic)) is not None:
                break
        if parts is None:
            return no(f"topic fits no --topic template ({', '.join(self._templates())})")
        data = load_mqtt_json(topic, payload)
        if isinstance(data, Rejected):
            return [data]
        m = self.mapping
        machine = parts.get("machine_id")
        if machine is None:
            machine = _path(data, m.machine_id or "")
            if not isinstance(machine, str):
                return no(f"machine_id field {m.machine_id!r} is {self._what(machine)}")
        ts = self._time(data)
        if isinstance(ts, str):
            return no(ts)
        if m.quality is not None:
            q = _path(data, m.quality)
            if q is _MISSING:
                return no(f"quality field {m.quality!r} is missing")
            if not any(q == g and type(q) is type(g) for g in m.good):
                return no(
                    f"quality field {m.quality!r} is {mqtt_excerpt(q)}, not good "
                    f"({', '.join(mqtt_excerpt(g) for g in m.good)})"
                )
        if m.sensors is None:
            sensor = parts.get("sensor")
            if sensor is None:
                sensor = _path(data, m.sensor or "")
                if not isinstance(sensor, str):
                    return no(f"sensor field {m.sensor!r} is {self._what(sensor)}")
            value = _path(data, m.value)
            record = self._one(machine, sensor, ts, value, f"value field {m.value!r}")
            if isinstance(record, str):
                return no(record)
            if m.unit is not None and "signal" not in record:
                unit = _path(data, m.unit)
                if unit is not _MISSING and unit is not None:
                    record["unit"] = unit
            return [record]
        # several sensors in one message: each field a reading (or a signal)
        fields = _path(data, m.fields)
        if not isinstance(fields, dict):
            return no(f"fields {m.fields or '(the payload)'!r} is {self._what(fields)}")
        out: list[dict | Rejected] = []
        if m.sensors == "*":
            names = [
                k
                for k, v in fields.items()
                if k not in self._not_sensors and (_number(v) or k in self._signal_of)
            ]
        else:
            names = list(m.sensors)
            names += [n for n in self._signal_of if n in fields and n not in names]
        for name in names:
            record = self._one(machine, name, ts, fields.get(name, _MISSING), f"field {name!r}")
            out.append(
                Rejected(mqtt_raw(payload), f"{where}: {record}")
                if isinstance(record, str)
                else record
            )
        if not out:
            return no(f'no sensor field in {m.fields or "the payload"!r} (sensors = "*")')
        return out

    def _one(self, machine: str, sensor: str, ts: object, value: object, what: str) -> dict | str:
        kind = self._signal_of.get(sensor)
        if kind is not None:
            if value is _MISSING:
                return f"{what} ({kind}) is missing"
            if isinstance(value, str):
                return {
                    "machine_id": machine,
                    "signal": kind,
                    "ts": ts,
                    "value": None,
                    "text": value,
                }
            return {"machine_id": machine, "signal": kind, "ts": ts, "value": value, "text": None}
        if value is _MISSING:
            return f"{what} is missing"
        if not _number(value):
            return f"{what} is {mqtt_excerpt(value)}, not a number"
        return {"machine_id": machine, "sensor": sensor, "ts": ts, "value": value}

    def _time(self, data: object) -> object:
        """The event time, RECEIVE_TIME, or the reason it is neither (a str)."""
        m = self.mapping
        raw = _path(data, m.time) if m.time else _MISSING
        if raw is _MISSING or raw is None:
            if m.missing_time == "receive":
                return RECEIVE_TIME
            return f'time field {m.time!r} is missing (missing_time = "reject")'
        if self._scale is None:
            if not isinstance(raw, str) or len(raw) > 64:
                return f"time field {m.time!r} is {mqtt_excerpt(raw)}, not an ISO 8601 time"
            try:
                ts = datetime.fromisoformat(raw)
            except ValueError:
                return f"time field {m.time!r} is {mqtt_excerpt(raw)}, not an ISO 8601 time"
            if ts.utcoffset() is None:
                return f"time field {m.time!r} is {mqtt_excerpt(raw)}, without a time zone"
            return ts.astimezone(UTC)
        if isinstance(raw, str) and raw.strip().lstrip("-").isdigit() and len(raw) <= 24:
            raw = int(raw)
        if not _number(raw) or not math.isfinite(raw):
            return f"time field {m.time!r} is {mqtt_excerpt(raw)}, not a number ({m.time_format})"
        try:
            if isinstance(raw, int):  # exact: integer nanoseconds lose nothing to a float
                seconds, rest = divmod(raw, int(self._scale))
                return _EPOCH + timedelta(seconds=seconds, microseconds=rest * 1e6 / self._scale)
            return _EPOCH + timedelta(seconds=raw / self._scale)
        except (OverflowError, ValueError):
            return f"time field {m.time!r} is {mqtt_excerpt(raw)}, out of range ({m.time_format})"

    def _templates(self) -> list[str]:
        return [t.template for t in self.templates]

    @staticmethod
    def _what(v: object) -> str:
        return "missing" if v is _MISSING else f"{mqtt_excerpt(v)}, not a text"


class MqttFormatError(ValueError):
    """A ``--mqtt-format`` that cannot be built (unknown, or its module is not installed)."""


def decoder_factory(
    fmt: str = "json",
    topics: list[str] | None = None,
    payload_map: Path | None = None,
) -> Callable[[], MqttDecoder]:
    """What builds one decoder per partition for ``--mqtt-format``, ``--topic`` and
    ``--payload-map``; a bad template, map or format raises here, before the pipeline starts."""
    if fmt == "sparkplug":
        if payload_map is not None:
            raise MqttFormatError("--payload-map is for --mqtt-format json, not sparkplug")
        try:
            from floorsight.pipelines.sparkplug import SparkplugDecoder
        except ImportError as e:
            raise MqttFormatError(
                f"--mqtt-format sparkplug: the Sparkplug B decoder is not available ({e})"
            ) from None
        return lambda: SparkplugDecoder(group=None)
    if fmt != "json":
        raise MqttFormatError(f"--mqtt-format {fmt!r}: use json or sparkplug")
    if not topics and payload_map is None:
        return JsonDecoder
    mapping = PayloadMap.load(payload_map) if payload_map is not None else PayloadMap()
    MappedJsonDecoder(topics, mapping)  # a bad template or map stops the start here
    return lambda: MappedJsonDecoder(topics, mapping)
