"""The OPC-UA tag map: which server nodes are which machine's sensors and signals.

A tag map is a CSV file the user owns, the common shape of a tag list::

    node_id,machine_id,sensor,unit,line,scale,offset,min,max,kind
    nsu=urn:acme:press-shop;s=PS.Press7.Force,press-7,force,kN,L1,1,0,0,400,sensor
    nsu=urn:acme:press-shop;s=PS.Press7.State,press-7,,,,,,,,state

``node_id``, ``machine_id``, ``sensor`` and ``unit`` are required columns; ``line``, ``scale``,
``offset``, ``min``, ``max`` and ``kind`` are optional. Node ids are in the standard text form,
best with the namespace by URI (``nsu=...;s=...``), which the source resolves to the server's
current namespace index at each connect, so a server that renumbers its namespaces keeps
working; ``ns=2;i=5`` is taken as it is. ``kind`` is ``sensor`` (the default), or a machine
signal: ``state``, ``good_count``, ``scrap_count`` (:class:`~floorsight.records.SignalKind`);
a signal needs no sensor name or unit. A sensor's value is ``value * scale + offset``; outside
``[min, max]`` it is a dead letter.

:func:`read_tag_map` checks every row (ids by the project's id rule, numbers finite, ``min <
max``, no node id twice, no machine and sensor twice) and raises :class:`TagMapError` naming the
file, the line and the column. :func:`browse_tags` walks a server's address space and drafts a
tag map (:func:`write_tag_map`) for the user to edit.
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from asyncua import Client, ua

from floorsight.opcua_client import node_id_text, parse_node_id
from floorsight.pipelines.validate import ID_PATTERN
from floorsight.records import SignalKind

REQUIRED = ("node_id", "machine_id", "sensor", "unit")
OPTIONAL = ("line", "scale", "offset", "min", "max", "kind")
COLUMNS = REQUIRED + OPTIONAL
SENSOR = "sensor"
KINDS = (SENSOR, *(k.value for k in SignalKind))
MAX_ROWS = 100_000
_ID = re.compile(ID_PATTERN)
_MAX_UNIT = 32


class TagMapError(ValueError):
    """A tag map that cannot be used: the file, line and column, and what is wrong."""


@dataclass(frozen=True)
class Tag:
    """One row of a tag map: a server node and what it is."""

    node_id: str  # text form as in the file (nsu=... or ns=...)
    machine_id: str
    sensor: str  # the sensor's name; for a signal, the signal's kind
    unit: str = ""
    line: str = ""
    scale: float = 1.0
    offset: float = 0.0
    min: float | None = None
    max: float | None = None
    kind: str = SENSOR
    where: str = ""  # "tags.csv, line 4", for messages

    @property
    def is_signal(self) -> bool:
        return self.kind != SENSOR

    @property
    def key(self) -> str:
        """The tag's key in a source's resume state: ``machine/sensor`` or ``machine//kind``."""
        if self.is_signal:
            return f"{self.machine_id}//{self.kind}"
        return f"{self.machine_id}/{self.sensor}"

    def apply(self, value: float) -> tuple[float | None, str | None]:
        """``value * scale + offset`` and None, or None and why it is out of the tag's range."""
        scaled = value * self.scale + self.offset
        if not math.isfinite(scaled):
            return None, f"value {value} * scale {self.scale} + offset {self.offset} overflows"
        if (self.min is not None and scaled < self.min) or (
            self.max is not None and scaled > self.max
        ):
            return None, (
                f"value {scaled:g} outside [{_bound(self.min)}, {_bound(self.max)}] of "
                f"{self.where or 'the tag map'}"
            )
        return scaled, None


def _bound(x: float | None) -> str:
    return "-" if x is None else f"{x:g}"


@dataclass(frozen=True)
class TagMap:
    """The checked rows of a tag map file."""

    path: Path
    tags: tuple[Tag, ...]

    @property
    def machines(self) -> frozenset[str]:
        return frozenset(t.machine_id for t in self.tags)


def read_tag_map(path: Path | str) -> TagMap:
    """The tag map in ``path``, every row checked; raises :class:`TagMapError` naming the file,
    line and column of the first problem (``FileNotFoundError`` for a missing file)."""
    path = Path(path)
    text = path.read_text(encoding="utf-8-sig")
    return parse_tag_map(text, path)


def parse_tag_map(text: str, path: Path | str = "<tag map>") -> TagMap:
    """The tag map in ``text`` (the contents of ``path``); see :func:`read_tag_map`.

    >>> m = parse_tag_map("node_id,machine_id,sensor,unit\\nns=2;s=A.T,M1,temp,degC\\n")
    >>> m.tags[0].key, m.tags[0].unit
    ('M1/temp', 'degC')
    """
    path = Path(path)
    if "\x00" in text:
        raise TagMapError(f"{path}: not a text file (NUL bytes)")
    reader = csv.reader(io.StringIO(text, newline=""))
    header, header_line = None, 0
    for row in reader:
        if any(cell.strip() for cell in row):
            header, header_line = [c.strip().lower() for c in row], reader.line_num
            break
    if header is None:
        raise TagMapError(f"{path}: empty; give a header {','.join(REQUIRED)} and one row a tag")
    where = f"{path}, line {header_line}"
    unknown = [c for c in header if c not in COLUMNS]
    if unknown:
        raise TagMapError(f"{where}: unknown column {unknown[0]!r} (columns: {', '.join(COLUMNS)})")
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        raise TagMapError(f"{where}: no column {missing[0]!r} (required: {', '.join(REQUIRED)})")
    twice = [c for c in header if header.count(c) > 1]
    if twice:
        raise TagMapError(f"{where}: column {twice[0]!r} twice")
    tags: list[Tag] = []
    nodes: dict[str, str] = {}
    names: dict[str, str] = {}
    for row in reader:
        if not any(cell.strip() for cell in row):
            continue
        line = reader.line_num
        where = f"{path}, line {line}"
        if len(tags) >= MAX_ROWS:
            raise TagMapError(f"{where}: more than {MAX_ROWS} tags")
        if len(row) != len(header):
            raise TagMapError(f"{where}: {len(row)} fields, the header has {len(header)}")
        cells = {c: v.strip() for c, v in zip(header, row, strict=True)}
        tag = _tag(cells, where)
        node = _normal_node_id(tag.node_id)
        if node in nodes:
            raise TagMapError(
                f"{where}, column node_id: node {tag.node_id} is already mapped on {nodes[node]}"
            )
        if tag.key in names:
            what = f"signal {tag.kind}" if tag.is_signal else f"sensor {tag.sensor}"
            raise TagMapError(
                f"{where}, column {'kind' if tag.is_signal else 'sensor'}: machine "
                f"{tag.machine_id} has {what} already on {names[tag.key]}"
            )
        nodes[node], names[tag.key] = f"line {line}", f"line {line}"
        tags.append(tag)
    if not tags:
        raise TagMapError(f"{path}: no tags (only a header)")
    return TagMap(path, tuple(tags))


def _normal_node_id(text: str) -> str:
    node = parse_node_id(text)
    return f"{getattr(node, 'NamespaceUri', None) or node.NamespaceIndex}|{node.to_string()}"


def _tag(cells: dict[str, str], where: str) -> Tag:
    def fail(column: str, message: str) -> TagMapError:
        return TagMapError(f"{where}, column {column}: {message}")

    node_id = cells["node_id"]
    if not node_id:
        raise fail("node_id", "empty")
    try:
        parse_node_id(node_id)
    except ValueError as e:
        raise fail("node_id", str(e)) from None
    kind = cells.get("kind", "").lower() or SENSOR
    if kind not in KINDS:
        raise fail("kind", f"{cells['kind']!r} is not one of {', '.join(KINDS)}")
    machine_id = _id(cells["machine_id"], "machine_id", fail)
    if kind == SENSOR:
        sensor = _id(cells["sensor"], "sensor", fail)
    else:
        sensor = _id(cells["sensor"], "sensor", fail) if cells["sensor"] else kind
    unit = cells["unit"]
    if len(unit) > _MAX_UNIT or any(not ch.isprintable() for ch in unit):
        raise fail("unit", f"{unit[:40]!r} is no unit (at most {_MAX_UNIT} printable characters)")
    line = cells.get("line", "")
    if line:
        _id(line, "line", fail)
    scale = _number(cells.get("scale", ""), "scale", fail, 1.0)
    if scale == 0:
        raise fail("scale", "0 would make every value the offset")
    offset = _number(cells.get("offset", ""), "offset", fail, 0.0)
    low = _number(cells.get("min", ""), "min", fail, None)
    high = _number(cells.get("max", ""), "max", fail, None)
    if low is not None and high is not None and not low < high:
        raise fail("max", f"max {high:g} is not above min {low:g}")
    return Tag(node_id, machine_id, sensor, unit, line, scale, offset, low, high, kind, where)


def _id(value: str, column: str, fail) -> str:
    if not value:
        raise fail(column, "empty")
    if not _ID.fullmatch(value):
        raise fail(
            column,
            f"{value[:60]!r} is not an id (letters, digits, _ . : -, starting with a letter or "
            "digit, at most 128)",
        )
    return value


def _number(value: str, column: str, fail, default: float | None) -> float | None:
    if not value:
        return default
    try:
        number = float(value)
    except ValueError:
        raise fail(column, f"{value[:40]!r} is not a number") from None
    if not math.isfinite(number):
        raise fail(column, f"{value!r} is not a finite number")
    return number


# -- drafts by browsing -----------------------------------------------------------------------

_NUMERIC = {
    ua.ObjectIds.SByte,
    ua.ObjectIds.Byte,
    ua.ObjectIds.Int16,
    ua.ObjectIds.UInt16,
    ua.ObjectIds.Int32,
    ua.ObjectIds.UInt32,
    ua.ObjectIds.Int64,
    ua.ObjectIds.UInt64,
    ua.ObjectIds.Float,
    ua.ObjectIds.Double,
    ua.ObjectIds.Duration,  # a Double
    ua.ObjectIds.Counter,  # a UInt32, the standard's own type for counters
    # the abstract numeric types: a variable of one holds any number (Int16, Double, ...)
    ua.ObjectIds.Number,
    ua.ObjectIds.Integer,
    ua.ObjectIds.UInteger,
}
_KIND_NAMES = {
    SignalKind.STATE.value: re.compile(r"^(machine|operating)?(state|status|mode)$"),
    SignalKind.GOOD_COUNT.value: re.compile(
        r"^(good(count|parts?|pieces|pcs|qty)|(parts?|pieces)good|goodcounter)$"
    ),
    SignalKind.SCRAP_COUNT.value: re.compile(
        r"^((scrap|reject|bad|nok)(count|parts?|pieces|pcs|qty|ed)?s?|(parts?|pieces)"
        r"(scrap|reject(ed)?|bad))$"
    ),
}


def guess_kind(name: str) -> str:
    """The signal a variable's name suggests (``State`` -> state, ``GoodParts`` -> good_count,
    ``RejectCount`` -> scrap_count), else ``sensor``.

    >>> guess_kind("GoodParts"), guess_kind("Reject_Count"), guess_kind("OilTemp")
    ('good_count', 'scrap_count', 'sensor')
    """
    plain = re.sub(r"[^a-z]", "", name.lower())
    for kind, pattern in _KIND_NAMES.items():
        if pattern.match(plain):
            return kind
    return SENSOR


def sanitise_id(name: str) -> str:
    """``name`` made an id by the project's rule (others become ``_``), ``x`` when nothing is left.

    >>> sanitise_id("Press 8/B"), sanitise_id("_hidden"), sanitise_id("Öl-Temp.")
    ('Press_8_B', 'hidden', 'l-Temp.')
    """
    text = re.sub(r"[^A-Za-z0-9_.:\-]+", "_", name.strip())
    text = text.lstrip("_.:-")[:128].rstrip("_")
    return text or "x"


@dataclass(frozen=True)
class BrowseResult:
    tags: tuple[Tag, ...]
    visited: int
    truncated: bool  # stopped at max_nodes


async def browse_tags(
    client: Client, *, max_depth: int = 8, max_nodes: int = 20_000
) -> BrowseResult:
    """A tag-map draft of every scalar numeric variable below Objects (and string variables
    whose name says they are a state), the OPC UA standard's own Server object left out;
    machine and sensor from the browse path (parent object, variable name), unit from the
    ``EngineeringUnits`` property, kind from the name (:func:`guess_kind`)."""
    namespaces = await client.get_namespace_array()
    hierarchical = ua.NodeId(ua.ObjectIds.HierarchicalReferences)
    found: list[tuple[list[str], ua.ReferenceDescription]] = []
    queue: list[tuple[ua.NodeId, list[str], int]] = [(client.nodes.objects.nodeid, [], 0)]
    seen: set[ua.NodeId] = {client.nodes.objects.nodeid}
    visited, truncated = 0, False
    while queue:
        node_id, path, depth = queue.pop(0)
        if visited >= max_nodes:
            truncated = True
            break
        visited += 1
        refs = await client.get_node(node_id).get_references(
            refs=hierarchical, direction=ua.BrowseDirection.Forward
        )
        for ref in refs:
            child = ref.NodeId
            if child in seen or child.NamespaceIndex == 0 or getattr(child, "ServerIndex", 0):
                continue
            seen.add(child)
            name = ref.BrowseName.Name or ref.DisplayName.Text or ""
            if ref.NodeClass == ua.NodeClass.Object and depth + 1 < max_depth:
                queue.append((child, [*path, name], depth + 1))
            elif ref.NodeClass == ua.NodeClass.Variable:
                if ref.TypeDefinition == ua.NodeId(ua.ObjectIds.PropertyType):
                    continue
                found.append((path, ref))
    tags = await _draft_rows(client, found, namespaces)
    return BrowseResult(tuple(tags), visited, truncated)


async def _draft_rows(
    client: Client, found: list[tuple[list[str], ua.ReferenceDescription]], namespaces: list[str]
) -> list[Tag]:
    if not found:
        return []
    ids = [ref.NodeId for _, ref in found]
    types = await client.uaclient.read_attributes(ids, ua.AttributeIds.DataType)
    ranks = await client.uaclient.read_attributes(ids, ua.AttributeIds.ValueRank)
    out: list[Tag] = []
    used: set[str] = set()
    for (path, ref), dtype, rank in zip(found, types, ranks, strict=True):
        name = ref.BrowseName.Name or ""
        kind = guess_kind(name)
        dtype_id = dtype.Value.Value if dtype.Value is not None else None
        scalar = rank.Value is not None and rank.Value.Value in (-1, None)
        numeric = (
            isinstance(dtype_id, ua.NodeId)
            and dtype_id.NamespaceIndex == 0
            and (dtype_id.Identifier in _NUMERIC)
        )
        text_state = kind == SignalKind.STATE.value and dtype_id == ua.NodeId(ua.ObjectIds.String)
        if not scalar or not (numeric or text_state):
            continue
        machine = sanitise_id(path[-1]) if path else "machine"
        line = sanitise_id(path[-2]) if len(path) >= 2 else ""
        sensor = sanitise_id(name)
        if kind != SENSOR and f"{machine}//{kind}" in used:
            if not numeric:
                continue  # a second state text of one machine: the user maps it by hand
            kind = SENSOR  # a second counter of one kind is drafted as a sensor
        n = 2
        while kind == SENSOR and f"{machine}/{sensor}" in used:  # one name, sanitised, twice
            sensor = f"{sanitise_id(name)[:120]}_{n}"
            n += 1
        used.add(f"{machine}//{kind}" if kind != SENSOR else f"{machine}/{sensor}")
        unit = await _unit(client, ref.NodeId) if kind == SENSOR else ""
        out.append(
            Tag(node_id_text(ref.NodeId, namespaces), machine, sensor, unit, line, kind=kind)
        )
    return out


async def _unit(client: Client, node_id: ua.NodeId) -> str:
    """The EngineeringUnits property's DisplayName, or "" (none, or not readable)."""
    try:
        prop = await client.get_node(node_id).get_child("0:EngineeringUnits")
        eu = await prop.read_value()
    except Exception:
        return ""
    text = getattr(getattr(eu, "DisplayName", None), "Text", None) or ""
    text = "".join(ch for ch in text if ch.isprintable())[:_MAX_UNIT]
    return text


def write_tag_map(tags: Iterable[Tag]) -> str:
    """The CSV text of ``tags`` with every column (scale 1, offset 0, no range)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    for t in tags:
        sensor = "" if t.is_signal and t.sensor == t.kind else t.sensor
        writer.writerow(
            [
                t.node_id,
                t.machine_id,
                sensor,
                t.unit,
                t.line,
                f"{t.scale:g}",
                f"{t.offset:g}",
                _blank(t.min),
                _blank(t.max),
                t.kind,
            ]
        )
    return out.getvalue()


def _blank(x: float | None) -> str:
    return "" if x is None else f"{x:g}"
