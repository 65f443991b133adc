"""Shards: groups of machines whose readings cross the dataflow together, one frame per shard.

Keying the per-reading steps (context join, windows) by machine would cost a Python call and a
dozen polars calls per machine per batch, so a plant of hundreds of machines would spend its
time in call overhead. Instead a machine belongs to shard ``crc32(machine_id) % shards`` and a
batch becomes one frame per shard; the steps keep per-machine semantics inside the frame (each
machine has its own watermark and context hold), so results do not depend on the number of
shards or workers.

``floorsight run`` uses one shard per source partition (``workers x processes``), and the file
replay source puts a machine in partition ``crc32(machine_id) % partitions`` too, so a source
batch is one shard: it is not split, and it stays on the worker that read it. Bytewax sends a
key to worker ``siphash13(key) % workers`` (Rust's ``DefaultHasher`` over the key's bytes, in
``stateful_batch``); :func:`shard_key` names shard ``i`` so that it goes to worker ``i``, which
is also the worker Bytewax gives source partition ``i`` (checked in ``tests/test_shards.py``). If
Bytewax assigned either differently the frames would just travel between workers.

The shard count is part of the recovery state: resume a run with the same workers and processes.
"""

from __future__ import annotations

import struct
import zlib
from functools import cache

import polars as pl

#: Shards of a one-worker dataflow (``floorsight run`` uses one per source partition).
SHARDS = 1

_MASK = (1 << 64) - 1


def _rotl(x: int, b: int) -> int:
    return ((x << b) | (x >> (64 - b))) & _MASK


def _sip_round(v0: int, v1: int, v2: int, v3: int) -> tuple[int, int, int, int]:
    v0 = (v0 + v1) & _MASK
    v1 = _rotl(v1, 13) ^ v0
    v0 = _rotl(v0, 32)
    v2 = (v2 + v3) & _MASK
    v3 = _rotl(v3, 16) ^ v2
    v0 = (v0 + v3) & _MASK
    v3 = _rotl(v3, 21) ^ v0
    v2 = (v2 + v1) & _MASK
    v1 = _rotl(v1, 17) ^ v2
    v2 = _rotl(v2, 32)
    return v0, v1, v2, v3


def siphash13(data: bytes) -> int:
    """SipHash-1-3 with a zero key: Rust's ``DefaultHasher::default()``.

    >>> hex(siphash13(b""))
    '0xd1fba762150c532c'
    """
    v0, v1 = 0x736F6D6570736575, 0x646F72616E646F6D
    v2, v3 = 0x6C7967656E657261, 0x7465646279746573
    tail = len(data) % 8
    for (m,) in struct.iter_unpack("<Q", data[: len(data) - tail]):
        v3 ^= m
        v0, v1, v2, v3 = _sip_round(v0, v1, v2, v3)
        v0 ^= m
    last = int.from_bytes(data[len(data) - tail :], "little") | ((len(data) & 0xFF) << 56)
    v3 ^= last
    v0, v1, v2, v3 = _sip_round(v0, v1, v2, v3)
    v0 ^= last
    v2 ^= 0xFF
    for _ in range(3):
        v0, v1, v2, v3 = _sip_round(v0, v1, v2, v3)
    return v0 ^ v1 ^ v2 ^ v3


def bytewax_route(key: str, workers: int) -> int:
    """The worker Bytewax sends a state key to (a Rust ``str`` hashes as its bytes + 0xFF)."""
    return siphash13(key.encode() + b"\xff") % workers


@cache
def shard_key(shard: int, shards: int = SHARDS) -> str:
    """The state key of ``shard``: ``shard-<i>`` plus the first suffix that routes it to ``i``."""
    n = 0
    while bytewax_route(key := f"shard-{shard}.{n}", shards) != shard:
        n += 1
    return key


def shard_of(machine_id: str, shards: int = SHARDS) -> int:
    return zlib.crc32(machine_id.encode()) % shards


def by_shard(readings: pl.DataFrame, shards: int = SHARDS) -> list[tuple[str, pl.DataFrame]]:
    """``readings`` split into one ``(shard key, frame)`` per shard that has readings."""
    if shards == 1:
        return [(shard_key(0, 1), readings)]
    shard = {m: shard_of(m, shards) for m in readings["machine_id"].unique().to_list()}
    if len(set(shard.values())) == 1:  # a replay batch: one source partition, one shard
        return [(shard_key(next(iter(shard.values())), shards), readings)]
    parts = readings.with_columns(
        _shard=pl.col("machine_id").replace_strict(shard, return_dtype=pl.Int32)
    ).partition_by("_shard", as_dict=True, include_key=False)
    return [(shard_key(s, shards), frame) for (s,), frame in parts.items()]


def shard_of_key(key: str) -> int | None:
    """The shard a state key made by :func:`shard_key` names (``shard-<i>.<n>``), else None."""
    head, dot, _ = key.partition(".")
    if not dot or not head.startswith("shard-") or not head[6:].isdigit():
        return None
    return int(head[6:])
