from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from floorsight.records import READING_SCHEMA
from tests.node_opcua import node_opcua  # noqa: F401  (the node-opcua test server fixture)

T0 = datetime(2026, 1, 5, 6, 0, tzinfo=UTC)

# the context suites' verdicts are kept between processes (features.expectations.CACHE_ENV):
# the tests keep theirs in a folder of their own, never in the user's cache
os.environ.setdefault("FLOORSIGHT_CACHE_DIR", tempfile.mkdtemp(prefix="floorsight-test-cache-"))


def readings(rows: list[tuple[str, str, float, float]]) -> pl.DataFrame:
    """Readings from (machine, sensor, seconds after T0, value) tuples."""
    return pl.DataFrame(
        [
            {"machine_id": m, "sensor": s, "ts": T0 + timedelta(seconds=t), "value": v}
            for m, s, t, v in rows
        ],
        schema=READING_SCHEMA,
    )


@pytest.fixture
def t0() -> datetime:
    return T0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_mosquitto(
    folder: Path, lines: list[str], port: int | None = None
) -> tuple[int, Callable[[], None]]:
    """Start a real Mosquitto with a listener on 127.0.0.1 ``port`` (a free one by default), no
    persistence file and the configuration ``lines`` (login, TLS), its file in ``folder``;
    returns once it listens, with its port and the function that stops it."""
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not Path(binary).exists():
        pytest.skip("mosquitto is not installed (make setup installs it with apt-get)")
    port = port or _free_port()
    conf = folder / f"mosquitto-{port}.conf"
    conf.write_text("\n".join([f"listener {port} 127.0.0.1", "persistence false", *lines]) + "\n")
    proc = subprocess.Popen([binary, "-c", str(conf)], stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 10
    while True:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                break
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"mosquitto did not start: {proc.stderr.read() if proc.stderr else ''}")
        time.sleep(0.05)

    def stop() -> None:
        proc.terminate()
        proc.wait(timeout=10)

    return port, stop


@pytest.fixture
def mosquitto(tmp_path) -> Iterator[tuple[str, int]]:
    """A real Mosquitto broker on 127.0.0.1 (a free port), for this test only.

    Its stock configuration: only a listener and anonymous access are set (and no persistence
    file, which a test broker has no folder for), so the default limits hold: 20 messages in
    flight and 1,000 queued per client.
    """
    port, stop = start_mosquitto(tmp_path, ["allow_anonymous true"])
    try:
        yield "127.0.0.1", port
    finally:
        stop()


@pytest.fixture
def postgres() -> Iterator[str]:
    """A real PostgreSQL server on 127.0.0.1 (a free port, a fresh cluster) for this test."""
    bins = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if not bins:
        pytest.skip("PostgreSQL is not installed (make setup installs it with apt-get)")
    bindir = bins[-1].parent
    # its own folder outside pytest's (which only root may enter): PostgreSQL refuses to run
    # as root, so as root it runs as the postgres user
    home = Path(tempfile.mkdtemp(prefix="floorsight-pg-"))
    data = home / "data"
    data.mkdir()
    prefix: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(home, "postgres")
        shutil.chown(data, "postgres")
        prefix = ["runuser", "-u", "postgres", "--"]
    port = _free_port()
    run = {"capture_output": True, "text": True}
    subprocess.run(
        [*prefix, str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust"],
        check=True,
        **run,
    )
    subprocess.run(
        [
            *prefix,
            str(bindir / "pg_ctl"),
            *("-D", str(data), "-l", str(home / "pg.log"), "-w", "start"),
            *("-o", f"-p {port} -k {home} -c listen_addresses=127.0.0.1"),
        ],
        check=True,
        **run,
    )
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(
            [*prefix, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
            check=False,
            capture_output=True,
        )
        shutil.rmtree(home, ignore_errors=True)
