"""The MQTT source's local journal: every received message on disk before the broker forgets it.

The journal is a folder of append-only segment files. Each record is one message (topic, payload
bytes, receive time) with a CRC-32; records are numbered from 0 in arrival order, and a segment
is named after the number of its first record. :meth:`Journal.append` writes a group of records
and (when ``durable``) fsyncs the file before it returns, so the caller may then acknowledge the
group to the broker. A reader asks for records from a number onward (:meth:`Journal.read`) and
sees only appended groups; :meth:`Journal.release` deletes the segments wholly below a number,
so the folder holds only what a restart might still replay.

A crash can leave a torn record at the end of the last segment (written, not yet fsynced, never
acknowledged): opening the journal cuts the segment back to its last whole record. The journal
knows nothing of MQTT or Bytewax; ``pipelines/mqtt_source.py`` wires it to both.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import os
import struct
import threading
import zlib
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from floorsight.config import private_dir

log = logging.getLogger("floorsight.mqtt")

# topic length, payload length, receive time (unix seconds), CRC-32 of the three and the bytes
_HEADER = struct.Struct("<IIdI")
_SUFFIX = ".seg"


@dataclass(frozen=True, slots=True)
class Message:
    """One journaled message: its number in the journal, topic, payload and receive time."""

    seq: int
    topic: str
    payload: bytes
    received: float


def message_key(topic: str, payload: bytes) -> bytes:
    """What identifies a redelivered copy of a message: a digest of its topic and payload."""
    return hashlib.blake2b(topic.encode("utf-8", "surrogateescape") + b"\0" + payload).digest()[:16]


class Journal:
    """Append-only, numbered, segmented records of received messages in ``folder``.

    ``start`` numbers the first record of an empty journal (the resume position of a source
    whose journal was lost, so numbers go on from there). ``recent`` keys of the last records
    are kept, so a broker's redelivery of a message already on disk can be recognised.
    """

    def __init__(
        self,
        folder: Path,
        durable: bool = True,
        segment_bytes: int = 16 << 20,
        start: int = 0,
        recent: int = 10_000,
    ) -> None:
        self.folder = private_dir(Path(folder))
        self.durable = durable
        self.segment_bytes = segment_bytes
        self._recent_max = recent
        self._recent: OrderedDict[bytes, None] = OrderedDict()
        self._lock = threading.Lock()
        self._segments = self._scan()  # first record numbers, ascending
        if not self._segments:
            self._segments = [start]
            self._new_segment(start)
        self._end, size = self._repair_tail()
        self._file = open(self._path(self._segments[-1]), "ab")  # noqa: SIM115
        self._size = size

    # -- writing (one thread) -------------------------------------------------------------------

    def append(self, records: Iterable[tuple[str, bytes, float]]) -> int:
        """Write ``records`` (topic, payload, receive time), on disk when it returns; the end."""
        buf = bytearray()
        keys = []
        n = 0
        for topic, payload, received in records:
            t = topic.encode("utf-8", "surrogateescape")
            head = struct.pack("<IId", len(t), len(payload), received)
            crc = zlib.crc32(payload, zlib.crc32(t, zlib.crc32(head)))
            buf += _HEADER.pack(len(t), len(payload), received, crc)
            buf += t
            buf += payload
            keys.append(message_key(topic, payload))
            n += 1
        if not n:
            return self._end
        self._file.write(buf)
        self._file.flush()
        if self.durable:
            os.fsync(self._file.fileno())
        self._size += len(buf)
        with self._lock:
            self._end += n
            for key in keys:
                self._recent[key] = None
            while len(self._recent) > self._recent_max:
                self._recent.popitem(last=False)
        if self._size >= self.segment_bytes:
            self._roll()
        return self._end

    def seen(self, topic: str, payload: bytes) -> bool:
        """Whether a message with this topic and payload is among the last records."""
        with self._lock:
            return message_key(topic, payload) in self._recent

    @property
    def end(self) -> int:
        """The number the next appended record gets."""
        with self._lock:
            return self._end

    def _roll(self) -> None:
        self._file.close()
        with self._lock:
            start = self._end
            self._segments.append(start)
        self._new_segment(start)
        self._file = open(self._path(start), "ab")  # noqa: SIM115
        self._size = 0

    def _new_segment(self, start: int) -> None:
        self._path(start).touch(mode=0o600)
        if self.durable:  # the new name must survive a crash as well as its records
            fd = os.open(self.folder, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    def close(self) -> None:
        self._file.close()

    # -- internals ------------------------------------------------------------------------------

    def _path(self, start: int) -> Path:
        return _segment_path(self.folder, start)

    def _scan(self) -> list[int]:
        return _segments(self.folder)

    def _repair_tail(self) -> tuple[int, int]:
        """The number after the last whole record, cutting a torn record off the last segment."""
        last = self._segments[-1]
        path = self._path(last)
        data = path.read_bytes()
        pos, seq = 0, last
        keys: list[bytes] = []
        while True:
            record = _parse(data, pos)
            if record is None:
                break
            topic, payload, _, size = record
            keys.append(message_key(topic, payload))
            pos += size
            seq += 1
        if pos < len(data):
            log.warning(
                "MQTT journal: cut %d bytes of a torn record off %s (never acknowledged: the "
                "broker delivers it again)",
                len(data) - pos,
                path.name,
            )
            with open(path, "r+b") as f:
                f.truncate(pos)
                f.flush()
                os.fsync(f.fileno())
        for key in keys[-self._recent_max :]:
            self._recent[key] = None
        return seq, pos


class JournalReader:
    """Reads the journal in ``folder`` that a :class:`Journal` (maybe in another process)
    writes, and deletes what is no longer needed. The writer says how far it is (``end``)."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self._cursor: _Cursor | None = None

    @property
    def first(self) -> int | None:
        """The number of the oldest record still on disk (None: no segment yet)."""
        segments = _segments(self.folder)
        return segments[0] if segments else None

    def read(self, start: int, limit: int, end: int) -> list[Message]:
        """Up to ``limit`` records numbered from ``start`` to before ``end``."""
        first = self.first
        if first is not None and start < first:
            log.error(
                "MQTT journal: records %d to %d were deleted before they were read; reading on "
                "from %d",
                start,
                first,
                first,
            )
            start = first
        if start >= end:
            return []
        cursor = self._cursor
        if cursor is None or cursor.seq != start:
            if cursor is not None:
                cursor.close()
            cursor = self._seek(start)
        out: list[Message] = []
        while len(out) < limit and cursor.seq < end:
            if cursor.at_segment_end():
                later = [s for s in _segments(self.folder) if s > cursor.segment]
                if not later or later[0] > cursor.seq:
                    break
                cursor.close()
                cursor = _Cursor(_segment_path(self.folder, later[0]), later[0], later[0])
                continue
            out.append(cursor.next())
        self._cursor = cursor
        return out

    def release(self, below: int) -> int:
        """Delete the segments whose records are all numbered below ``below``; how many.

        The last segment (the one being written) is never deleted."""
        segments = _segments(self.folder)
        gone = [s for s, nxt in itertools.pairwise(segments) if nxt <= below]
        for start in gone:
            if self._cursor is not None and self._cursor.segment == start:
                self._cursor.close()
                self._cursor = None
            _segment_path(self.folder, start).unlink(missing_ok=True)
        return len(gone)

    def close(self) -> None:
        if self._cursor is not None:
            self._cursor.close()
            self._cursor = None

    def _seek(self, seq: int) -> _Cursor:
        segment = max(s for s in _segments(self.folder) if s <= seq)
        cursor = _Cursor(_segment_path(self.folder, segment), segment, segment)
        while cursor.seq < seq:
            cursor.skip()
        return cursor


def _segments(folder: Path) -> list[int]:
    return sorted(int(p.stem) for p in Path(folder).glob(f"*{_SUFFIX}") if p.stem.isdigit())


def _segment_path(folder: Path, start: int) -> Path:
    return Path(folder) / f"{start:020d}{_SUFFIX}"


def journal_end(folder: Path) -> int:
    """The number after the last whole record in the journal at ``folder``, read only (for a
    process watching another's journal: a writer may be appending)."""
    segments = _segments(folder)
    if not segments:
        return 0
    data = _segment_path(folder, segments[-1]).read_bytes()
    pos, seq = 0, segments[-1]
    while (record := _parse(data, pos)) is not None:
        pos += record[3]
        seq += 1
    return seq


class _Cursor:
    """A read position in one segment file."""

    def __init__(self, path: Path, segment: int, seq: int) -> None:
        self.segment = segment
        self.seq = seq
        self._file = open(path, "rb")  # noqa: SIM115
        self._size = os.fstat(self._file.fileno()).st_size

    def at_segment_end(self) -> bool:
        if self._file.tell() < self._size:
            return False
        self._size = os.fstat(self._file.fileno()).st_size  # the writer may have appended
        return self._file.tell() >= self._size

    def _header(self) -> tuple[int, int, float]:
        head = self._file.read(_HEADER.size)
        if len(head) < _HEADER.size:
            raise EOFError(f"journal segment {self.segment}: record {self.seq} is cut short")
        tlen, plen, received, _ = _HEADER.unpack(head)
        return tlen, plen, received

    def next(self) -> Message:
        tlen, plen, received = self._header()
        topic = self._file.read(tlen).decode("utf-8", "surrogateescape")
        payload = self._file.read(plen)
        msg = Message(self.seq, topic, payload, received)
        self.seq += 1
        return msg

    def skip(self) -> None:
        tlen, plen, _ = self._header()
        self._file.seek(tlen + plen, os.SEEK_CUR)
        self.seq += 1

    def close(self) -> None:
        self._file.close()


def _parse(data: bytes, pos: int) -> tuple[str, bytes, float, int] | None:
    """The whole, intact record at ``pos`` (topic, payload, received, size), or None."""
    if len(data) - pos < _HEADER.size:
        return None
    tlen, plen, received, crc = _HEADER.unpack_from(data, pos)
    start = pos + _HEADER.size
    stop = start + tlen + plen
    if stop > len(data):
        return None
    t, payload = data[start : start + tlen], data[start + tlen : stop]
    head = struct.pack("<IId", tlen, plen, received)
    if zlib.crc32(payload, zlib.crc32(t, zlib.crc32(head))) != crc:
        return None
    return t.decode("utf-8", "surrogateescape"), payload, received, stop - pos
