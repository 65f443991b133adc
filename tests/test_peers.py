"""A cluster process waits for its lower-numbered peers on this host to listen before its
dataflow dials them (``floorsight.peers``), on real sockets of this machine."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

from floorsight.peers import listening_ports, loopback_port, wait_for_lower_peers


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_listening_socket_is_in_the_table_and_a_bound_one_is_not() -> None:
    with socket.socket() as bound, socket.socket() as listening:
        bound.bind(("127.0.0.1", 0))
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        ports = listening_ports()
        assert listening.getsockname()[1] in ports
        assert bound.getsockname()[1] not in ports


def test_only_loopback_addresses_are_waited_for() -> None:
    assert loopback_port("127.0.0.1:2101") == 2101
    assert loopback_port("localhost:2102") == 2102
    assert loopback_port("[::1]:2103") == 2103
    assert loopback_port("10.77.0.2:2101") is None  # another host: timely's retry
    assert loopback_port("node-b:2101") is None


def test_process_1_waits_until_process_0_listens() -> None:
    port = _free_port()
    addresses = [f"127.0.0.1:{port}", f"127.0.0.1:{_free_port()}"]
    server = socket.socket()
    server.bind(("127.0.0.1", port))

    def listen_later() -> None:
        time.sleep(0.3)
        server.listen()

    later = threading.Thread(target=listen_later)
    later.start()
    try:
        assert port not in listening_ports()  # bound, not listening yet: the wait begins
        assert wait_for_lower_peers(addresses, 1, timeout_s=10)
        assert port in listening_ports()
        # the peer was never dialled: nothing waits to be accepted
        server.setblocking(False)
        try:
            server.accept()
            raise AssertionError("the wait connected to the peer")
        except BlockingIOError:
            pass
    finally:
        later.join()
        server.close()


def test_a_peer_that_never_listens_ends_the_wait_at_its_bound() -> None:
    addresses = [f"127.0.0.1:{_free_port()}", f"127.0.0.1:{_free_port()}"]
    assert not wait_for_lower_peers(addresses, 1, timeout_s=0.2)
    # process 0 has no lower peer, and a peer on another host is not waited for
    assert wait_for_lower_peers(addresses, 0, timeout_s=0.2)
    assert wait_for_lower_peers(["10.77.0.1:2101", addresses[1]], 1, timeout_s=0.2)


def test_a_host_without_a_socket_table_does_not_wait(tmp_path: Path) -> None:
    # no /proc/net/tcp (another system, or /proc hidden): timely's retry, no 10 s wait
    missing = [tmp_path / "tcp", tmp_path / "tcp6"]
    assert listening_ports(missing) is None
    addresses = [f"127.0.0.1:{_free_port()}", f"127.0.0.1:{_free_port()}"]
    assert wait_for_lower_peers(addresses, 1, timeout_s=30, tables=missing)
