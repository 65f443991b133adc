"""Waiting for a cluster's lower-numbered processes on this host before dialling them.

When the dataflow starts, timely (Bytewax's engine) has process ``i`` dial every process
``j < i``. If ``j`` is not listening yet, the connection is refused and timely tries again a
second later. It prints ``worker i: error connecting to worker j: Connection refused ...;
retrying`` and the whole cluster waits. Processes started side by side (``run --processes N``,
or several processes of one host) do the same start-up work at the same moment, so losing
that race is common: a second at every start.

Before its dataflow starts, :func:`wait_for_lower_peers` has a process wait, up to a bound,
until every lower-numbered peer on a loopback address is listening. It reads the kernel's
socket table for this (``/proc/net/tcp`` and ``tcp6``) and never connects to the peer, since a
connection that sends nothing would break timely's handshake. Peers on other hosts are left to
timely's retry.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Sequence
from pathlib import Path

#: ``st`` of a listening socket in /proc/net/tcp
_LISTEN = "0A"
_TABLES = (Path("/proc/net/tcp"), Path("/proc/net/tcp6"))


def listening_ports(tables: Sequence[Path] = _TABLES) -> set[int] | None:
    """Ports with a listening TCP socket in this network namespace (any local address); None
    when no socket table can be read (no /proc: not Linux, or hidden)."""
    ports, read = set(), False
    for table in tables:
        try:
            lines = table.read_text().splitlines()[1:]
        except OSError:
            continue
        read = True
        for line in lines:
            fields = line.split()
            if len(fields) > 3 and fields[3] == _LISTEN:
                ports.add(int(fields[1].rpartition(":")[2], 16))
    return ports if read else None


def loopback_port(address: str) -> int | None:
    """The port of ``host:port`` when the host is a loopback address, else None."""
    host, _, port = address.rpartition(":")
    host = host.strip("[]")
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: another host, as far as this check can tell
        return None
    return int(port) if loopback and port.isdigit() else None


def wait_for_lower_peers(
    addresses: Sequence[str],
    process_id: int,
    timeout_s: float = 10.0,
    poll_s: float = 0.01,
    tables: Sequence[Path] = _TABLES,
) -> bool:
    """Wait until processes ``0 .. process_id - 1`` that are on this host listen; True when
    they all do (or none is on this host, or this host has no socket table to tell: then
    timely's retry is all there is), False when ``timeout_s`` ran out first."""
    ports = {p for a in addresses[:process_id] if (p := loopback_port(a)) is not None}
    deadline = time.monotonic() + timeout_s
    while ports:
        listening = listening_ports(tables)
        if listening is None or not ports - listening:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(poll_s)
    return True
