"""Delivery rounds per second with one destination down and one up, on a simulated clock.

Two webhook destinations on 127.0.0.1: ``down`` (a closed port, so every attempt is refused)
with ``--due`` notifications queued, and ``up`` (a real HTTP receiver) that is given one new
notification every round. The outbox's ``deliver`` runs ``--rounds`` times, the clock moving
``--step-s`` simulated seconds per round; the run reports rounds per wall second, how many
rounds raised, and whether ``up`` got every notification in the round it was queued::

    .venv/bin/python benchmarks/delivery_rounds.py --due 1000 --rounds 2000 --step-s 60

``--down 503`` makes the down destination a server answering 503, and counts the requests it
gets (how hard a failing receiver is hit)::

    .venv/bin/python benchmarks/delivery_rounds.py --down 503 --due 3000 --rounds 60 --step-s 1

``--outbox-module FILE`` loads another ``outbox.py`` (for example the one of an older commit,
``git show COMMIT:alerts/outbox.py > /tmp/outbox_before.py``) to compare.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import socket
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from floorsight.alerts import outbox as current_outbox
from floorsight.alerts.destinations import webhook


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _receiver(status: int = 204) -> tuple[ThreadingHTTPServer, list[str]]:
    got: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            got.append(self.headers["Idempotency-Key"])
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, got


def _outbox_module(path: str | None):
    if path is None:
        return current_outbox
    spec = importlib.util.spec_from_file_location("outbox_under_test", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--due", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=2000)
    parser.add_argument("--step-s", type=float, default=60.0)
    parser.add_argument("--outbox-module", default=None)
    parser.add_argument(
        "--down",
        choices=("refused", "503"),
        default="refused",
        help="how the down destination fails: a closed port, or a server answering 503",
    )
    args = parser.parse_args()

    module = _outbox_module(args.outbox_module)
    server, got = _receiver()
    up_url = f"http://127.0.0.1:{server.server_address[1]}/alerts"
    down_server, down_got = _receiver(503) if args.down == "503" else (None, [])
    port = down_server.server_address[1] if down_server else _free_port()
    down_url = f"http://127.0.0.1:{port}/alerts"
    senders = {"down": webhook(down_url), "up": webhook(up_url)}
    t = datetime(2026, 1, 5, tzinfo=UTC)
    raised: dict[str, int] = {}
    first_raised = None
    late = 0
    with tempfile.TemporaryDirectory() as tmp:
        box = module.Outbox(Path(tmp) / "outbox.sqlite")
        for i in range(args.due):
            box.enqueue("down", f"down-{i}", {"i": i}, now=t)
        start = time.perf_counter()
        for r in range(args.rounds):
            key = f"up-{r}"
            box.enqueue("up", key, {"r": r}, now=t)
            try:
                box.deliver(senders, now=t)
            except Exception as e:
                raised[type(e).__name__] = raised.get(type(e).__name__, 0) + 1
                first_raised = r if first_raised is None else first_raised
            if not got or got[-1] != key:
                late += 1
            t += timedelta(seconds=args.step_s)
        seconds = time.perf_counter() - start
        counts = box.counts()
    server.shutdown()
    if down_server is not None:
        down_server.shutdown()
    print(
        json.dumps(
            {
                "rounds": args.rounds,
                "simulated_days": round(args.rounds * args.step_s / 86400, 2),
                "seconds": round(seconds, 2),
                "rounds_per_s": round(args.rounds / seconds, 1),
                "rounds_raised": raised,
                "first_round_raised": first_raised,
                "up_rounds_not_delivered_in_their_round": late,
                "up_delivered": len(set(got)),
                "requests_to_down": len(down_got) if down_server else None,
                "counts": counts,
            }
        )
    )


if __name__ == "__main__":
    main()
