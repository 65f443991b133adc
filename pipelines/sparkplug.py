"""Sparkplug B over MQTT: births, aliases, data, deaths and sequence numbers as readings, signals.

:class:`SparkplugDecoder` is the MQTT source's decoder for ``--mqtt-format sparkplug`` (the
decoder protocol of ``pipelines/mqtt_mapping.py``). It subscribes to ``spBv1.0/<group>/#`` and
reads each message by the Sparkplug B 3.0 rules:

- topics ``spBv1.0/<group>/<TYPE>/<edge_node>[/<device>]``; a device's messages are the
  machine ``<device>``, an edge node's own messages the machine ``<edge_node>``; a metric is a
  sensor of its machine, its name mapped onto floorsight's id rule ('/' becomes '.', white space
  '_'; a name that still does not fit is a dead letter naming it);
- NBIRTH / DBIRTH define each metric (name, alias, datatype) and carry its current value; NDATA /
  DDATA name metrics by alias (or name). An alias that no birth defined (the decoder started
  after the birth, or lost its state) is a dead letter saying so, counted, and the edge node is
  listed in :meth:`SparkplugDecoder.nodes_needing_rebirth` (an NCMD ``Node Control/Rebirth``
  makes it publish its births again; the decoder does not send commands);
- a payload compressed as Tahu's clients do (``uuid`` ``SPBV1.0_COMPRESSED``, the body DEFLATE
  or GZIP as its ``algorithm`` metric says) is read inflated, at most ``MAX_INFLATED_BYTES``;
- a metric whose ``Quality`` property is not 192 (Good) is a dead letter with its code;
- numbers (Int8..UInt64, Float, Double) are readings, booleans readings of 0.0 / 1.0; other
  datatypes (String, DateTime, DataSet, Template, Bytes ...) and null values are dead letters,
  unless the metric's name is mapped to a :class:`floorsight.records.SignalKind` in
  ``signals`` (a ``State`` string or code, a good or scrap counter);
- births are the machine's state ``online``, NDEATH (for each of the node's devices) and
  DDEATH ``offline``; an edge node has a state of its own only when its NBIRTH has metrics of
  the plant (else it is a gateway, no machine); an NDEATH whose ``bdSeq`` is not the current
  birth's is a late will of an earlier session and changes nothing;
- a metric's time is its own timestamp, else its payload's (ms since the epoch, UTC); a metric
  with neither is a dead letter; a state without a payload timestamp, and every NDEATH's (a
  will's timestamp is its session's start), takes the time the message was received;
- ``seq`` (0..255, per edge node, over all its messages but NDEATH) is checked: a gap is logged
  as a WARNING naming the node, the expected and the received number, and counted; NBIRTH starts
  the sequence again.

The protobuf schema is Eclipse Tahu's ``sparkplug_b.proto`` (``org.eclipse.tahu.protobuf``),
declared here for the ``protobuf`` package to decode; fields floorsight does not read
(metadata, property sets, data sets, templates) are declared as bytes of the same wire type.
Nothing raises: any byte string on any topic is a reading, a signal, a
:class:`floorsight.pipelines.validate.Rejected` whose reason starts with the topic, or nothing
(host applications' STATE messages and commands). The state kept (edge nodes, devices, metric
definitions) is bounded: beyond ``max_nodes`` / ``max_devices`` / ``max_metrics`` a birth is
refused with a dead letter. :meth:`SparkplugDecoder.state` is JSON-able and restores with
:meth:`SparkplugDecoder.restore`.
"""

from __future__ import annotations

import copy
import logging
import re
import zlib
from datetime import UTC, datetime, timedelta

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import DecodeError

from floorsight.pipelines.mqtt_mapping import RECEIVE_TIME
from floorsight.pipelines.validate import ID_PATTERN, MAX_PAYLOAD_BYTES, MAX_RAW_CHARS, Rejected
from floorsight.records import SignalKind

log = logging.getLogger(__name__)

#: the first level of every Sparkplug B topic
NAMESPACE = "spBv1.0"
#: metric names that are the protocol's own, not the plant's: never readings nor dead letters
CONTROL_PREFIXES = ("Node Control/", "Device Control/", "Node Info/", "Properties/")
BDSEQ = "bdSeq"
#: a metric's ``Quality`` property (an OPC quality code, as Ignition sends it) other than this,
#: Good, makes its value a dead letter with the code
GOOD_QUALITY = 192
#: the ``uuid`` of a compressed payload (its ``body`` is the deflated or gzipped payload)
COMPRESSED = b"SPBV1.0_COMPRESSED"
#: a compressed payload may inflate to at most this many bytes
MAX_INFLATED_BYTES = 4 * MAX_PAYLOAD_BYTES
#: the default signals: a metric whose name's last level ('Press/Machine State'), in lower case
#: without anything but letters and digits, is one of these, is that signal
DEFAULT_SIGNALS: dict[str, str] = {
    "state": SignalKind.STATE,
    "status": SignalKind.STATE,
    "machinestate": SignalKind.STATE,
    "machinestatus": SignalKind.STATE,
    "goodcount": SignalKind.GOOD_COUNT,
    "goodparts": SignalKind.GOOD_COUNT,
    "scrapcount": SignalKind.SCRAP_COUNT,
    "scrapparts": SignalKind.SCRAP_COUNT,
    "rejectcount": SignalKind.SCRAP_COUNT,
}
#: Sparkplug B datatypes (Tahu's ``DataType`` enum), by number
DATATYPES = {
    0: "Unknown",
    1: "Int8",
    2: "Int16",
    3: "Int32",
    4: "Int64",
    5: "UInt8",
    6: "UInt16",
    7: "UInt32",
    8: "UInt64",
    9: "Float",
    10: "Double",
    11: "Boolean",
    12: "String",
    13: "DateTime",
    14: "Text",
    15: "UUID",
    16: "DataSet",
    17: "Bytes",
    18: "File",
    19: "Template",
    20: "PropertySet",
    21: "PropertySetList",
}
#: signed integer datatypes and their width in bits
_SIGNED = {1: 8, 2: 16, 3: 32, 4: 64}
_NUMERIC = frozenset(range(1, 11))
_BOOLEAN = 11
_TEXT = frozenset({12, 14, 15})
_NUMBER_FIELDS = frozenset({"int_value", "long_value", "float_value", "double_value"})
_MESSAGE_TYPES = frozenset({"NBIRTH", "NDEATH", "NDATA", "DBIRTH", "DDEATH", "DDATA"})
_COMMANDS = frozenset({"NCMD", "DCMD"})
_ID = re.compile(ID_PATTERN)
_SPACE = re.compile(r"\s")
_NOT_ALNUM = re.compile(r"[^a-z0-9]")
_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: counters of :meth:`SparkplugDecoder.counts`
COUNTERS = (
    "messages",
    "readings",
    "signals",
    "dead_letters",
    "seq_gaps",
    "unknown_aliases",
    "decode_errors",
    "refused",
    "stale_deaths",
    "ignored",
)

#: the counters that say something went wrong (logged at a snapshot when they changed)
PROBLEMS = ("seq_gaps", "unknown_aliases", "decode_errors", "refused", "stale_deaths")


def _payload_class() -> type:
    """The ``Payload`` message of Tahu's schema, in a descriptor pool of its own."""
    f = descriptor_pb2.FieldDescriptorProto
    file = descriptor_pb2.FileDescriptorProto(
        name="floorsight/sparkplug_b.proto", package="org.eclipse.tahu.protobuf", syntax="proto2"
    )
    payload = file.message_type.add(name="Payload")
    metric = payload.nested_type.add(name="Metric")
    metric.oneof_decl.add(name="value")
    properties = payload.nested_type.add(name="PropertySet")
    value = payload.nested_type.add(name="PropertyValue")
    value.oneof_decl.add(name="value")

    def field(msg, name, number, kind, *, repeated=False, type_name=None, oneof=False) -> None:
        fd = msg.field.add(name=name, number=number, type=kind)
        fd.label = f.LABEL_REPEATED if repeated else f.LABEL_OPTIONAL
        if type_name:
            fd.type_name = type_name
        if oneof:
            fd.oneof_index = 0

    # strings are read as bytes and decoded per metric, so one bad name is one dead letter
    field(payload, "timestamp", 1, f.TYPE_UINT64)
    field(payload, "metrics", 2, f.TYPE_MESSAGE, repeated=True, type_name="Payload.Metric")
    field(payload, "seq", 3, f.TYPE_UINT64)
    field(payload, "uuid", 4, f.TYPE_BYTES)
    field(payload, "body", 5, f.TYPE_BYTES)
    field(metric, "name", 1, f.TYPE_BYTES)
    field(metric, "alias", 2, f.TYPE_UINT64)
    field(metric, "timestamp", 3, f.TYPE_UINT64)
    field(metric, "datatype", 4, f.TYPE_UINT32)
    field(metric, "is_historical", 5, f.TYPE_BOOL)
    field(metric, "is_transient", 6, f.TYPE_BOOL)
    field(metric, "is_null", 7, f.TYPE_BOOL)
    field(metric, "metadata", 8, f.TYPE_BYTES)  # MetaData
    field(metric, "properties", 9, f.TYPE_MESSAGE, type_name="Payload.PropertySet")
    field(properties, "keys", 1, f.TYPE_BYTES, repeated=True)
    field(properties, "values", 2, f.TYPE_MESSAGE, repeated=True, type_name="Payload.PropertyValue")
    field(value, "type", 1, f.TYPE_UINT32)
    field(value, "is_null", 2, f.TYPE_BOOL)
    for name, number, kind in (
        ("int_value", 3, f.TYPE_UINT32),
        ("long_value", 4, f.TYPE_UINT64),
        ("float_value", 5, f.TYPE_FLOAT),
        ("double_value", 6, f.TYPE_DOUBLE),
        ("boolean_value", 7, f.TYPE_BOOL),
        ("string_value", 8, f.TYPE_BYTES),
        ("propertyset_value", 9, f.TYPE_BYTES),  # PropertySet
        ("propertysets_value", 10, f.TYPE_BYTES),  # PropertySetList
        ("extension_value", 11, f.TYPE_BYTES),  # PropertyValueExtension
    ):
        field(value, name, number, kind, oneof=True)
    for name, number, kind in (
        ("int_value", 10, f.TYPE_UINT32),
        ("long_value", 11, f.TYPE_UINT64),
        ("float_value", 12, f.TYPE_FLOAT),
        ("double_value", 13, f.TYPE_DOUBLE),
        ("boolean_value", 14, f.TYPE_BOOL),
        ("string_value", 15, f.TYPE_BYTES),
        ("bytes_value", 16, f.TYPE_BYTES),
        ("dataset_value", 17, f.TYPE_BYTES),  # DataSet
        ("template_value", 18, f.TYPE_BYTES),  # Template
        ("extension_value", 19, f.TYPE_BYTES),  # MetricValueExtension
    ):
        field(metric, name, number, kind, oneof=True)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return message_factory.GetMessageClass(
        pool.FindMessageTypeByName("org.eclipse.tahu.protobuf.Payload")
    )


Payload = _payload_class()


class _Refused(Exception):  # noqa: N818 (a refusal of input, not a fault of ours)
    """A message that is one dead letter as a whole (the reason without the topic)."""


class SparkplugDecoder:
    """Sparkplug B messages as readings, machine signals and dead letters (module docstring).

    ``group`` limits the subscription to one Sparkplug group (default: every group).
    ``signals`` maps exact metric names (as the edge node sends them) to a signal kind
    (``state``, ``good_count``, ``scrap_count``); by default a metric is a signal when the last
    level of its name, lower case and only letters and digits, is in :data:`DEFAULT_SIGNALS`.
    An NDEATH's
    states take the time the message reached the source's journal (``RECEIVE_TIME``): a will's
    own timestamp is the start of its session, not the time of the death.

    >>> decoder = SparkplugDecoder(group="Plant1")
    >>> decoder.subscriptions()
    ['spBv1.0/Plant1/#']
    >>> decoder.decode("spBv1.0/Plant1/DDATA/gw1/press3", b"\\xff")[0].reason[:42]
    'spBv1.0/Plant1/DDATA/gw1/press3: not a Spa'
    """

    def __init__(
        self,
        group: str | None = None,
        signals: dict[str, str] | None = None,
        *,
        max_nodes: int = 1_000,
        max_devices: int = 10_000,
        max_metrics: int = 200_000,
    ) -> None:
        if group is not None and (not group or any(c in group for c in "/+#")):
            raise ValueError(f"Sparkplug group {group!r} must be one topic level, no wildcards")
        self.group = group
        self.signals = signals
        self.max_nodes = max_nodes
        self.max_devices = max_devices
        self.max_metrics = max_metrics
        self._reset()

    def _reset(self) -> None:
        kinds = DEFAULT_SIGNALS if self.signals is None else self.signals
        self._signals = {name: SignalKind(kind) for name, kind in kinds.items()}
        self._room = 0  # metric definitions a birth may still add (set per birth)
        # "group/edge_node" -> {"seq", "bdseq", "machine" (has metrics of the plant), "metrics",
        # "aliases", "devices": {device: {"metrics", "aliases"}}}; "metrics" maps a name to its
        # datatype, "aliases" an alias (str) to its name
        self._nodes: dict[str, dict] = {}
        self._counts = dict.fromkeys(COUNTERS, 0)
        self._rebirth: set[str] = set()
        self._logged = dict.fromkeys(PROBLEMS, 0)

    # -- the decoder protocol ---------------------------------------------------------------

    def subscriptions(self) -> list[str]:
        return [f"{NAMESPACE}/{self.group or '+'}/#"]

    def decode(self, topic: str, payload: bytes) -> list[dict | Rejected]:
        """What one Sparkplug message holds; never raises (see the module docstring)."""
        self._counts["messages"] += 1
        try:
            out = self._decode(topic, payload)
        except _Refused as e:
            out = [Rejected(_raw(payload), f"{_where(topic)}: {e}")]
        except Exception as e:  # the last guard: no input may stop the pipeline
            self._counts["decode_errors"] += 1
            out = [Rejected(_raw(payload), f"{_where(topic)}: unreadable ({type(e).__name__})")]
        for item in out:
            if isinstance(item, Rejected):
                self._counts["dead_letters"] += 1
            elif "signal" in item:
                self._counts["signals"] += 1
            else:
                self._counts["readings"] += 1
        return out

    def state(self) -> dict:
        problems = {k: self._counts[k] for k in PROBLEMS}
        if problems != self._logged:  # the source asks at each snapshot: the counts go to the log
            self._logged = problems
            log.info(
                "Sparkplug: %s messages, %s readings, %s signals, %s dead letters; %s",
                self._counts["messages"],
                self._counts["readings"],
                self._counts["signals"],
                self._counts["dead_letters"],
                ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in problems.items()),
            )
        return {"nodes": copy.deepcopy(self._nodes), "counts": dict(self._counts)}

    def restore(self, state: dict) -> None:
        self._reset()
        try:
            nodes = state.get("nodes", {})
            for key, node in nodes.items():
                self._nodes[str(key)] = _node_from(node)
            for name, n in state.get("counts", {}).items():
                if name in self._counts and isinstance(n, int):
                    self._counts[name] = n
            self._logged = {k: self._counts[k] for k in PROBLEMS}
        except Exception as e:
            log.warning(
                "Sparkplug: the snapshot's decoder state is unreadable (%s); starting without "
                "births (edge nodes' data is dead-lettered until they rebirth)",
                type(e).__name__,
            )
            self._reset()

    # -- what it has seen --------------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        """Messages, readings, signals, dead letters, seq gaps, unknown aliases, decode errors,
        refused births (beyond the bounds), stale deaths and ignored messages, since the start
        (restored with the state)."""
        return dict(self._counts)

    def nodes_needing_rebirth(self) -> list[str]:
        """Edge nodes (``group/edge_node``) that sent an alias no birth defined."""
        return sorted(self._rebirth)

    # -- decoding ----------------------------------------------------------------------------

    def _decode(self, topic: object, payload: object) -> list[dict | Rejected]:
        if not isinstance(topic, str):
            raise _Refused("topic is not text")
        levels = topic.split("/")
        if levels[0] != NAMESPACE:
            raise _Refused(f"not a Sparkplug B topic (it does not start with {NAMESPACE}/)")
        if len(levels) >= 2 and levels[1] == "STATE":
            self._counts["ignored"] += 1  # a host application's own state
            return []
        if len(levels) not in (4, 5):
            raise _Refused(
                f"topic has {len(levels)} levels, not {NAMESPACE}/group/TYPE/edge_node[/device]"
            )
        group, kind, edge = levels[1], levels[2], levels[3]
        device = levels[4] if len(levels) == 5 else None
        if self.group is not None and group != self.group:
            raise _Refused(f"group {_excerpt(group)} is not {self.group!r}")
        if kind in _COMMANDS:
            self._counts["ignored"] += 1  # commands to edge nodes, not data
            return []
        if kind not in _MESSAGE_TYPES:
            raise _Refused(f"unknown Sparkplug message type {_excerpt(kind)}")
        if (device is None) != kind.startswith("N"):
            raise _Refused(f"{kind} on a topic {'without' if device is None else 'with'} a device")
        machine = _machine(edge if device is None else device)
        if not isinstance(payload, bytes | bytearray | memoryview):
            raise _Refused(f"payload is a {type(payload).__name__}, not bytes")
        if len(payload) > MAX_PAYLOAD_BYTES:
            raise _Refused(f"payload of {len(payload)} bytes exceeds {MAX_PAYLOAD_BYTES}")
        message = self._parse(bytes(payload))
        if message.HasField("uuid") and message.uuid == COMPRESSED:
            message = self._parse(_decompress(message), "compressed ")
        node_key = f"{group}/{edge}"
        if kind == "NDEATH":
            return self._node_death(node_key, machine, message)
        if kind == "NBIRTH":
            node = self._node_birth(node_key, message)
        else:
            node = self._nodes.get(node_key)
            if node is None:
                # no NBIRTH seen: a DBIRTH's own definitions still hold
                node = self._new_node(node_key) if kind == "DBIRTH" else self._unborn(node_key)
            self._check_seq(node_key, node, message)
        out: list[dict | Rejected] = []
        if kind == "DDEATH":
            node["devices"].pop(device, None)
            return [self._state(machine, message, "offline")]
        if kind == "DBIRTH":
            node["devices"].pop(device, None)
            if len(self._devices()) >= self.max_devices:
                self._counts["refused"] += 1
                raise _Refused(f"device refused: {self.max_devices} devices are tracked already")
            node["devices"][device] = {"metrics": {}, "aliases": {}}
        table = node if device is None else node["devices"].get(device)
        birth = kind.endswith("BIRTH")
        if birth:  # counted once per birth, not per metric: a birth may define thousands
            self._room = self.max_metrics - self._metric_count()
        if birth and (device is not None or node["machine"]):
            out.append(self._state(machine, message, "online"))
        for metric in message.metrics:
            item = self._metric(topic, node_key, machine, table, metric, message, birth)
            if item is not None:
                out.append(item)
        return out

    def _parse(self, data: bytes, what: str = ""):
        message = Payload()
        try:
            message.ParseFromString(data)
        except (DecodeError, RuntimeError, ValueError) as e:
            self._counts["decode_errors"] += 1
            raise _Refused(f"not a {what}Sparkplug B payload ({_excerpt(str(e))})") from None
        return message

    def _node_birth(self, node_key: str, message) -> dict:
        node = self._new_node(node_key)
        node["seq"] = message.seq if message.HasField("seq") else 0
        for metric in message.metrics:
            if metric.name == BDSEQ.encode() and metric.WhichOneof("value") is not None:
                node["bdseq"] = _number(metric)
            # an edge node is a machine of its own when it has metrics of the plant's
            node["machine"] |= not _is_control(metric.name.decode("utf-8", "replace"))
        self._rebirth.discard(node_key)
        return node

    def _new_node(self, node_key: str) -> dict:
        if node_key not in self._nodes and len(self._nodes) >= self.max_nodes:
            self._counts["refused"] += 1
            raise _Refused(f"edge node refused: {self.max_nodes} edge nodes are tracked already")
        node = {
            "seq": None,
            "bdseq": None,
            "machine": False,
            "metrics": {},
            "aliases": {},
            "devices": {},
        }
        self._nodes[node_key] = node
        return node

    def _unborn(self, node_key: str) -> dict:
        """A node whose birth was not seen: nothing to resolve aliases with (not tracked)."""
        return {
            "seq": None,
            "bdseq": None,
            "machine": False,
            "metrics": {},
            "aliases": {},
            "devices": {},
        }

    def _node_death(self, node_key: str, machine: str, message) -> list[dict | Rejected]:
        node = self._nodes.get(node_key)
        bdseq = None
        for metric in message.metrics:
            if metric.name == BDSEQ.encode() and metric.WhichOneof("value") is not None:
                bdseq = _number(metric)
        if node is not None and None not in (bdseq, node["bdseq"]) and bdseq != node["bdseq"]:
            self._counts["stale_deaths"] += 1
            log.info(
                "Sparkplug edge node %s: NDEATH of bdSeq %s, the current birth's is %s "
                "(a will of an earlier session): ignored",
                _where(node_key),  # a topic's text, cut and cleaned
                bdseq,
                node["bdseq"],
            )
            return []
        ts = RECEIVE_TIME
        devices = sorted(node["devices"]) if node is not None else []
        self._nodes.pop(node_key, None)
        out: list[dict | Rejected] = []
        if node is not None and node["machine"]:
            out.append(_signal(machine, SignalKind.STATE, ts, None, "offline"))
        # a device is tracked only after its id passed the id rule at its birth
        out += [_signal(device, SignalKind.STATE, ts, None, "offline") for device in devices]
        return out

    def _check_seq(self, node_key: str, node: dict, message) -> None:
        got = message.seq if message.HasField("seq") else None
        expected = node["seq"]
        if expected is not None:
            expected = (expected + 1) % 256
            if got != expected:
                self._counts["seq_gaps"] += 1
                log.warning(
                    "Sparkplug edge node %s: sequence gap, expected seq %s, got %s",
                    _where(node_key),  # a topic's text, cut and cleaned
                    expected,
                    "none" if got is None else got,
                )
        if got is not None:
            node["seq"] = got % 256

    def _devices(self) -> list[tuple[str, str]]:
        return [(k, d) for k, node in self._nodes.items() for d in node["devices"]]

    def _metric_count(self) -> int:
        return sum(
            len(n["metrics"]) + sum(len(d["metrics"]) for d in n["devices"].values())
            for n in self._nodes.values()
        )

    def _metric(
        self, topic: str, node_key: str, machine: str, table: dict | None, metric, message, birth
    ) -> dict | Rejected | None:
        try:
            return self._metric_item(node_key, machine, table, metric, message, birth)
        except _Refused as e:
            return Rejected(_metric_raw(metric), f"{_where(topic)}: {e}")

    def _metric_item(
        self, node_key: str, machine: str, table: dict | None, metric, message, birth
    ) -> dict | None:
        name = _name(metric) if metric.HasField("name") else None
        datatype = metric.datatype if metric.HasField("datatype") else None
        if birth:
            if name is None:
                raise _Refused("birth metric without a name")
            if table is not None:
                if name not in table["metrics"]:
                    if self._room <= 0:
                        self._counts["refused"] += 1
                        raise _Refused(
                            f"metric {_excerpt(name)} refused: {self.max_metrics} metrics are "
                            "tracked already"
                        )
                    self._room -= 1
                table["metrics"][name] = datatype
                if metric.HasField("alias"):
                    table["aliases"][str(metric.alias)] = name
        elif name is None:
            if not metric.HasField("alias"):
                raise _Refused("metric has neither a name nor an alias")
            name = table["aliases"].get(str(metric.alias)) if table is not None else None
            if name is None:
                self._counts["unknown_aliases"] += 1
                if node_key not in self._rebirth:
                    self._rebirth.add(node_key)
                    log.warning(
                        "Sparkplug edge node %s sent alias %s that no birth defined: it needs "
                        "a rebirth (an NCMD with Node Control/Rebirth = true)",
                        _where(node_key),  # a topic's text, cut and cleaned
                        metric.alias,
                    )
                raise _Refused(
                    f"metric alias {metric.alias} is unknown (no birth of it seen); the edge "
                    "node needs a rebirth"
                )
        if _is_control(name):
            return None
        if datatype is None and table is not None:
            datatype = table["metrics"].get(name)
        if datatype is None:
            datatype = 0
        ts = _time(metric.timestamp if metric.HasField("timestamp") else None, message)
        if ts is None:
            raise _Refused(f"metric {_excerpt(name)} has no timestamp, nor has its payload")
        kind = self._signal_kind(name)
        if metric.HasField("is_null") and metric.is_null:
            raise _Refused(f"metric {_excerpt(name)} is null (no value)")
        quality = _quality(metric)
        if quality is not None and quality != GOOD_QUALITY:
            raise _Refused(
                f"metric {_excerpt(name)} has quality {quality}, not Good ({GOOD_QUALITY})"
            )
        if kind is not None:
            return self._signal_item(machine, name, kind, datatype, metric, ts)
        sensor = _sensor(name)
        value = self._reading_value(name, datatype, metric)
        return {"machine_id": machine, "sensor": sensor, "ts": ts, "value": value}

    def _signal_kind(self, name: str) -> SignalKind | None:
        if self.signals is not None:  # the plant's own map: exact metric names
            return self._signals.get(name)
        return self._signals.get(_NOT_ALNUM.sub("", name.rsplit("/", 1)[-1].lower()))

    def _reading_value(self, name: str, datatype: int, metric) -> float:
        which = metric.WhichOneof("value")
        if which is None:
            raise _Refused(f"metric {_excerpt(name)} has no value")
        if datatype == _BOOLEAN or (datatype == 0 and which == "boolean_value"):
            if which != "boolean_value":
                raise _Refused(f"metric {_excerpt(name)} is a Boolean without a boolean value")
            return 1.0 if metric.boolean_value else 0.0
        if datatype not in _NUMERIC and not (datatype == 0 and which in _NUMBER_FIELDS):
            what = DATATYPES.get(datatype, f"datatype {datatype}")
            raise _Refused(
                f"metric {_excerpt(name)} is a {what}, not a number (map it as a signal to read it)"
            )
        if which not in _NUMBER_FIELDS:
            raise _Refused(f"metric {_excerpt(name)} has a {which} for a numeric datatype")
        return float(_number(metric, datatype))

    def _signal_item(self, machine, name, kind, datatype, metric, ts) -> dict:
        which = metric.WhichOneof("value")
        untyped = datatype == 0
        if which == "string_value" and kind == SignalKind.STATE and (untyped or datatype in _TEXT):
            text = _text(metric.string_value, name)
            return _signal(machine, kind, ts, None, text)
        if which in _NUMBER_FIELDS and (untyped or datatype in _NUMERIC):
            return _signal(machine, kind, ts, float(_number(metric, datatype)), None)
        if which == "boolean_value" and kind == SignalKind.STATE:
            return _signal(machine, kind, ts, 1.0 if metric.boolean_value else 0.0, None)
        raise _Refused(f"metric {_excerpt(name)} ({kind} signal) has no usable value ({which})")

    def _state(self, machine: str, message, text: str) -> dict:
        ts = _time(None, message) or RECEIVE_TIME
        return _signal(machine, SignalKind.STATE, ts, None, text)


def _node_from(node: dict) -> dict:
    """A node of a snapshot, checked for shape (a restore never keeps a malformed table)."""

    def table(t: dict) -> dict:
        metrics = {str(k): (int(v) if v is not None else None) for k, v in t["metrics"].items()}
        aliases = {str(int(k)): str(v) for k, v in t["aliases"].items()}
        return {"metrics": metrics, "aliases": aliases}

    seq, bdseq = node["seq"], node["bdseq"]
    return {
        "seq": int(seq) % 256 if seq is not None else None,
        "bdseq": int(bdseq) if bdseq is not None else None,
        "machine": bool(node["machine"]),
        **table(node),
        "devices": {str(d): table(t) for d, t in node["devices"].items()},
    }


def _is_control(name: str) -> bool:
    return name == BDSEQ or name.startswith(CONTROL_PREFIXES)


def _signal(machine: str, kind: SignalKind, ts: datetime, value, text) -> dict:
    return {"machine_id": machine, "signal": str(kind), "ts": ts, "value": value, "text": text}


def _number(metric, datatype: int | None = None) -> int | float:
    """The metric's number; a signed integer datatype reads its two's complement."""
    which = metric.WhichOneof("value")
    if which == "int_value":
        v = metric.int_value
        bits = _SIGNED.get(datatype)
        if bits is not None:
            # Tahu's encoders sign-extend Int8/Int16 to 32 bits; others keep the type's width
            width = 32 if v >= 1 << bits else bits
            v = v - (1 << width) if v >= 1 << (width - 1) else v
        return v
    if which == "long_value":
        v = metric.long_value
        if datatype in _SIGNED and v >= 1 << 63:
            v -= 1 << 64
        return v
    if which == "float_value":
        return metric.float_value
    if which == "double_value":
        return metric.double_value
    if which == "boolean_value":
        return int(metric.boolean_value)
    raise _Refused(f"value is a {which}, not a number")


def _quality(metric) -> int | None:
    """The metric's ``Quality`` property (an integer code), if it has one."""
    if not metric.HasField("properties"):
        return None
    props = metric.properties
    for key, value in zip(props.keys, props.values, strict=False):
        if key == b"Quality":
            which = value.WhichOneof("value")
            if which in ("int_value", "long_value"):
                return _number(value, value.type if value.HasField("type") else None)
            raise _Refused(f"Quality property is a {which}, not an integer code")
    return None


def _decompress(message) -> bytes:
    """The inner payload of a compressed one (Tahu's ``SPBV1.0_COMPRESSED``: the body deflated
    or gzipped, the ``algorithm`` metric says which; DEFLATE without it), bounded in size."""
    algorithm = b"DEFLATE"
    for metric in message.metrics:
        if metric.name == b"algorithm" and metric.WhichOneof("value") == "string_value":
            algorithm = metric.string_value.upper()
    wbits = {b"DEFLATE": zlib.MAX_WBITS, b"GZIP": 16 + zlib.MAX_WBITS}.get(algorithm)
    if wbits is None:
        name = algorithm.decode("utf-8", "replace")
        raise _Refused(f"compression {_excerpt(name)} is neither DEFLATE nor GZIP")
    inflate = zlib.decompressobj(wbits)
    try:
        data = inflate.decompress(message.body, MAX_INFLATED_BYTES + 1)
    except zlib.error as e:
        raise _Refused(f"compressed body does not inflate ({_excerpt(str(e))})") from None
    if len(data) > MAX_INFLATED_BYTES:
        raise _Refused(f"compressed body inflates beyond {MAX_INFLATED_BYTES} bytes")
    if not inflate.eof:
        raise _Refused("compressed body is cut short")
    return data


def _time(ms: int | None, message) -> datetime | None:
    """A metric's time (ms since the epoch, UTC), else its payload's; None without either."""
    if ms is None:
        if not message.HasField("timestamp"):
            return None
        ms = message.timestamp
    try:
        return _EPOCH + timedelta(milliseconds=ms)
    except OverflowError:
        raise _Refused(f"timestamp {ms} is out of range") from None


def _name(metric) -> str:
    try:
        return metric.name.decode("utf-8")
    except UnicodeDecodeError:
        raise _Refused(f"metric name {_excerpt(metric.name)} is not UTF-8") from None


def _text(raw: bytes, name: str) -> str:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise _Refused(f"metric {_excerpt(name)} has a value that is not UTF-8") from None
    if len(text) > 128 or _CONTROL_CHARS.search(text):
        raise _Refused(f"metric {_excerpt(name)} has a state text {_excerpt(text)} out of rule")
    return text


def _machine(raw: str) -> str:
    if not _ID.fullmatch(raw):
        raise _Refused(f"machine id {_excerpt(raw)} does not fit the id rule {ID_PATTERN}")
    return raw


def _sensor(name: str) -> str:
    sensor = _SPACE.sub("_", name.replace("/", "."))
    if not _ID.fullmatch(sensor):
        raise _Refused(
            f"metric name {_excerpt(name)} does not fit the id rule {ID_PATTERN} "
            "('/' becomes '.', white space '_')"
        )
    return sensor


def _excerpt(v: object) -> str:
    text = v if isinstance(v, str) else repr(v)
    text = _CONTROL_CHARS.sub("\ufffd", text.encode("utf-8", "replace").decode("utf-8"))
    return repr(text[:40] + "...") if len(text) > 40 else repr(text)


def _where(topic: object) -> str:
    if not isinstance(topic, str):
        return _excerpt(topic)
    return _CONTROL_CHARS.sub("\ufffd", topic[:200].encode("utf-8", "replace").decode("utf-8"))


def _raw(payload: object) -> str:
    """A binary payload as a dead letter keeps it: hex, bounded."""
    try:
        data = bytes(payload)
    except Exception:
        return _excerpt(payload)
    head = data[: MAX_RAW_CHARS // 2].hex()
    return head if len(data) <= MAX_RAW_CHARS // 2 else f"{head}...[truncated, {len(data)} bytes]"


def _metric_raw(metric) -> str:
    try:
        return _raw(metric.SerializeToString())
    except Exception:
        return ""


__all__ = ["COUNTERS", "DATATYPES", "DEFAULT_SIGNALS", "Payload", "SparkplugDecoder"]
