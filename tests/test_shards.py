"""Shards: a batch is split by machine groups, and each shard goes to the worker that reads it."""

from __future__ import annotations

import threading

import bytewax.operators as op
import polars as pl
import pytest
from bytewax.dataflow import Dataflow
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from bytewax.testing import TestingSource, cluster_main

from floorsight.pipelines.replay import partition_of
from floorsight.pipelines.shards import by_shard, bytewax_route, shard_key, shard_of
from tests.conftest import readings


@pytest.mark.parametrize("workers", [2, 3])
def test_bytewax_sends_a_key_where_bytewax_route_says(workers: int) -> None:
    keys = [f"machine-{i}" for i in range(40)]
    seen: dict[str, str] = {}
    flow = Dataflow("routing")
    items = op.input("in", flow, TestingSource([(k, 1) for k in keys]))
    where = op.stateful_map(
        "where", items, lambda state, _: (None, threading.current_thread().name)
    )
    op.inspect("seen", where, lambda _step, kv: seen.__setitem__(*kv))
    cluster_main(flow, [], 0, worker_count_per_proc=workers)
    # every worker thread receives the keys of exactly one predicted worker
    by_thread: dict[str, set[int]] = {}
    for key, thread in seen.items():
        by_thread.setdefault(thread, set()).add(bytewax_route(key, workers))
    assert len(by_thread) == workers
    assert all(len(routes) == 1 for routes in by_thread.values())


@pytest.mark.parametrize("workers", [2, 4])
def test_shard_i_lives_on_the_worker_of_source_partition_i(workers: int) -> None:
    class Parts(FixedPartitionedSource):
        def list_parts(self):
            return [f"machines-{i}-of-{workers}" for i in range(workers)]

        def build_part(self, step_id, for_part, resume_state):
            index = int(for_part.split("-")[1])

            class Part(StatefulSourcePartition):
                done = False

                def next_batch(self):
                    if self.done:
                        raise StopIteration
                    self.done = True
                    return [(shard_key(index, workers), threading.current_thread().name)]

                def snapshot(self):
                    return None

            return Part()

    pairs: list[tuple[str, str]] = []
    flow = Dataflow("placement")
    items = op.input("in", flow, Parts())
    placed = op.stateful_map(
        "place", items, lambda state, src: (None, (src, threading.current_thread().name))
    )
    op.inspect("pairs", placed, lambda _step, kv: pairs.append(kv[1]))
    cluster_main(flow, [], 0, worker_count_per_proc=workers)
    assert len(pairs) == workers
    assert all(source == state for source, state in pairs)  # no shard leaves its worker


def test_a_batch_is_split_into_its_shards_and_a_one_shard_batch_is_not_copied() -> None:
    machines = [f"M{i:02d}" for i in range(12)]
    batch = readings([(m, "t", float(s), float(s)) for m in machines for s in range(3)])
    parts = dict(by_shard(batch, 3))
    assert len(parts) == len({shard_of(m, 3) for m in machines})
    for key, frame in parts.items():
        shards = {shard_of(m, 3) for m in frame["machine_id"]}
        assert [shard_key(s, 3) for s in shards] == [key]
    assert pl.concat(parts.values()).sort("machine_id", "ts").equals(batch.sort("machine_id", "ts"))
    # the replay source's partition of a machine is its shard: its batches are one shard
    one = batch.filter(pl.col("machine_id").is_in([m for m in machines if partition_of(m, 3) == 1]))
    [(key, frame)] = by_shard(one, 3)
    assert key == shard_key(1, 3) and frame is one
