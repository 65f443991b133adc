"""Several hosts: a Bytewax cluster whose processes each run in a Linux network namespace of
their own, started as on separate hosts (``--process-id``, ``--addresses``), against a
one-process run over the same history.

The namespaces hang off a bridge in the root namespace, in a test subnet ``10.213.N.0/24``
made for the test and removed after it (even when it fails). Each "host" writes its own
folder with the per-process layout (its partition file and outbox, no shared disk while the
run lasts); the folders' files are then brought together, as a copy from each host would be,
and read as one store: every table equals the one-process run's, and the webhook receiver
(listening on the bridge, reachable from every namespace) got from the cluster exactly the
notifications the one process sent, each once.
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from floorsight.pipelines.shards import shard_of
from floorsight.storage import Database, partition_files
from tests.test_outbox import Receiver, webhook_routing

pytestmark = pytest.mark.e2e

#: the command each host runs, the way it would be installed there
FLOORSIGHT = Path(sys.executable).with_name("floorsight")
#: columns that say when a row was written, not what it holds
VOLATILE = {"received_at", "validated_at"}
#: the Bytewax cluster port each process listens on (each host has its own network)
CLUSTER_PORT = 2101
#: process upsets often enough that a few hours raise alerts on several machines
UPSETS = ("--faults-per-day", "64", "--fault-kinds", "process_upset")


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


def _free_subnet() -> int:
    used = subprocess.run(
        ["ip", "-o", "-4", "addr"], check=True, capture_output=True, text=True
    ).stdout
    for n in secrets.SystemRandom().sample(range(1, 255), 254):
        if f" 10.213.{n}." not in used:
            return n
    raise RuntimeError("no free 10.213.N.0/24 subnet for the test")


@dataclass
class Hosts:
    """Network namespaces on one bridge: ``namespaces[i]`` has ``addresses[i]``."""

    namespaces: list[str]
    addresses: list[str]
    bridge_address: str

    def cluster(self) -> str:
        return ";".join(f"{a}:{CLUSTER_PORT}" for a in self.addresses)

    def start(self, i: int, log: Path, *args: str) -> subprocess.Popen:
        """``floorsight ARGS`` in namespace ``i``, its output to ``log``."""
        with log.open("w") as out:
            return subprocess.Popen(
                ["ip", "netns", "exec", self.namespaces[i], str(FLOORSIGHT), *args],
                stdout=out,
                stderr=subprocess.STDOUT,
            )


@contextmanager
def network_hosts(count: int) -> Iterator[Hosts]:
    """``count`` namespaces with a veth each into a new bridge; all removed on exit."""
    tag = secrets.token_hex(3)  # names unique per run, short enough for an interface
    bridge = f"fs{tag}br"
    namespaces, links = [], [bridge]
    try:
        try:
            _ip("netns", "add", f"fs{tag}h0")
        except (subprocess.CalledProcessError, FileNotFoundError) as e:
            detail = e.stderr.strip() if isinstance(e, subprocess.CalledProcessError) else e
            pytest.skip(f"cannot create a network namespace here (ip netns add: {detail})")
        namespaces.append(f"fs{tag}h0")
        subnet = _free_subnet()
        _ip("link", "add", bridge, "type", "bridge")
        _ip("addr", "add", f"10.213.{subnet}.1/24", "dev", bridge)
        _ip("link", "set", bridge, "up")
        addresses = []
        for i in range(count):
            ns, veth, peer = f"fs{tag}h{i}", f"fs{tag}v{i}", f"fs{tag}p{i}"
            if i:
                _ip("netns", "add", ns)
                namespaces.append(ns)
            _ip("link", "add", veth, "type", "veth", "peer", "name", peer)
            links.append(veth)
            _ip("link", "set", peer, "netns", ns)
            _ip("link", "set", veth, "master", bridge, "up")
            address = f"10.213.{subnet}.{10 + i}"
            _ip("-n", ns, "addr", "add", f"{address}/24", "dev", peer)
            _ip("-n", ns, "link", "set", peer, "up")
            _ip("-n", ns, "link", "set", "lo", "up")
            addresses.append(address)
        yield Hosts(namespaces, addresses, f"10.213.{subnet}.1")
    finally:
        for link in reversed(links):
            subprocess.run(["ip", "link", "del", link], capture_output=True, check=False)
        for ns in namespaces:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)


def _run_args(history: Path, db: Path, routing: Path) -> list[str]:
    return [
        *("run", "--history", str(history / "readings"), "--context", str(history / "erp")),
        *("--db", str(db), "--routing", str(routing)),
    ]


def _tables(db: Path) -> dict[str, pl.DataFrame]:
    """Every table of the database (a file or a per-process store), in one order."""
    database = Database(db)
    names = database.query(
        "SELECT table_name FROM information_schema.tables"
        " WHERE table_catalog = current_database() ORDER BY table_name"
    )["table_name"].to_list()
    out = {}
    for name in names:
        frame = database.query(f'SELECT * FROM "{name}"')
        frame = frame.drop([c for c in frame.columns if c in VOLATILE])
        out[name] = frame.sort(frame.columns)
    return out


def simulate(out: Path, *options: str) -> Path:
    """``floorsight simulate --out OUT OPTIONS`` (at 1 Hz): a history folder."""
    made = subprocess.run(
        [str(FLOORSIGHT), "simulate", "--out", str(out), "--hz", "1", *options],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert made.returncode == 0, made.stderr
    return out


@pytest.fixture(scope="module")
def history(tmp_path_factory) -> Path:
    return simulate(
        tmp_path_factory.mktemp("history"),
        # seed 9: alerts on machines of every host of 2 and of 3 (M05 alone is host 1 of 3)
        *("--hours", "3", "--seed", "9", "--machines", "6", *UPSETS),
    )


@pytest.fixture(scope="module")
def reference(history, tmp_path_factory) -> tuple[dict[str, pl.DataFrame], Counter]:
    return one_process(history, tmp_path_factory.mktemp("reference"))


def one_process(history: Path, tmp: Path) -> tuple[dict[str, pl.DataFrame], Counter]:
    """One process, one DuckDB file: its tables and the notifications it delivered (to one of
    its two webhooks, which got the same)."""
    receivers = [Receiver(), Receiver()]
    try:
        routing = webhook_routing(tmp / "routing.toml", *(r.url for r in receivers))
        done = subprocess.run(
            [str(FLOORSIGHT), *_run_args(history, tmp / "one.duckdb", routing)],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    finally:
        for receiver in receivers:
            receiver.close()
    tables = _tables(tmp / "one.duckdb")
    assert tables["alerts"].height >= 2 and tables["features"].height > 10_000
    sent = [Counter(key for key, _ in r.received) for r in receivers]
    assert sent[0], "the one process delivered no notification"
    assert sent[0] == sent[1]
    return tables, sent[0]


@pytest.mark.parametrize("count", [2, 3])
def test_a_cluster_of_hosts_writes_and_notifies_what_one_process_does(
    count, history, reference, tmp_path
) -> None:
    expected_tables, expected_sent = reference
    with network_hosts(count) as hosts:
        # two destinations, each reachable from every namespace on the bridge's address
        receivers = [Receiver(host=hosts.bridge_address) for _ in range(2)]
        procs: list[subprocess.Popen] = []
        try:
            routing = webhook_routing(tmp_path / "routing.toml", *(r.url for r in receivers))
            for i in range(count):
                procs.append(
                    hosts.start(
                        i,
                        tmp_path / f"host{i}.log",
                        *_run_args(history, tmp_path / f"host{i}", routing),
                        *("--db-layout", "per-process", "-w", "1"),
                        *("--process-id", str(i), "--addresses", hosts.cluster()),
                    )
                )
            codes = [p.wait(timeout=600) for p in procs]
        finally:
            for proc in procs:  # a host that failed leaves the others waiting for it
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
            for receiver in receivers:
                receiver.close()
    for i, code in enumerate(codes):
        assert code == 0, f"host {i}: {(tmp_path / f'host{i}.log').read_text()[-3000:]}"
    # each host wrote only its own partition (and its outbox) in its own folder
    for i in range(count):
        assert [f.name for f in partition_files(tmp_path / f"host{i}")] == [
            f"floorsight.p{i}.duckdb"
        ]
        assert (tmp_path / f"host{i}" / f"floorsight.p{i}.outbox.sqlite").exists()
    # the hosts' files brought together are one store: every table is the one process's
    store = tmp_path / "store"
    store.mkdir()
    for i in range(count):
        shutil.copy(tmp_path / f"host{i}" / f"floorsight.p{i}.duckdb", store)
    got = _tables(store)
    assert sorted(got) == sorted(expected_tables)
    for name, expected in expected_tables.items():
        assert_frame_equal(got[name], expected, check_exact=False, rel_tol=1e-9), name
    # each host holds exactly the rows of the machines it reads (partition crc32 % hosts)
    owners = set()
    for i in range(count):
        part = tmp_path / f"host{i}" / f"floorsight.p{i}.duckdb"
        for table in ("features", "scores", "alerts"):
            machines = Database(part).query(f"SELECT DISTINCT machine_id FROM {table}")
            assert {shard_of(m, count) for m in machines["machine_id"]} <= {i}, (i, table)
        if Database(part).query("SELECT count(*) AS n FROM alerts")["n"][0]:
            owners.add(i)
    # alerts were raised on every host, and every notification arrived once at each
    # destination
    for receiver in receivers:
        sent = Counter(key for key, _ in receiver.received)
        assert set(sent.values()) == {1}, "a notification was delivered twice"
        assert set(sent) == set(expected_sent)
    assert owners == set(range(count)), "the history should raise alerts on every host"
