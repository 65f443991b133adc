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

from typing import Protocol, runtime_checkable

from floorsight.pipelines.validate import Rejected, parse_mqtt_payload

#: the topics floorsight's own publisher (the simulator) sends to
DEFAULT_TOPIC = "plant/#"


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

    Messages on a ``.../status`` topic (the simulator's publisher's online/offline notes) are
    skipped. A ``signal`` key of a payload is an unknown field like any other (floorsight's own
    JSON carries readings only), so a payload cannot pass for a signal.
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
            record = {k: v for k, v in record.items() if k != "signal"}
        return [record]

    def state(self) -> dict:
        return {}

    def restore(self, state: dict) -> None:
        pass
