"""How fast the Sparkplug B decoder reads DDATA: payloads Eclipse Tahu's own encoder wrote.

    .venv/bin/python benchmarks/sparkplug_decode.py --metrics 4 --rounds 40

Encodes an NBIRTH, a DBIRTH of ``--metrics`` Double metrics with aliases and 256 DDATA
payloads (seq 2..257 mod 256, every metric by alias) with Tahu's npm ``sparkplug-payload``
(``tests/sparkplug_node``; Node.js needed), then decodes the DDATA ``--rounds`` times over.
Prints JSON: messages, readings, seconds, messages and readings per second, seq gaps (0), and
the seconds of one DBIRTH of ``--birth-metrics`` Double metrics (its bytes too).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from floorsight.pipelines.sparkplug import SparkplugDecoder
from tests.sparkplug_tahu import tahu_encode


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--metrics", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--birth-metrics", type=int, default=10_000)
    args = parser.parse_args()
    names = range(args.metrics)
    birth = [{"name": f"s{i}", "alias": i, "type": "Double", "value": 1.0} for i in names]
    node, device, *data = tahu_encode(
        {"timestamp": 1, "seq": 0, "metrics": [{"name": "bdSeq", "type": "UInt64", "value": 0}]},
        {"timestamp": 1, "seq": 1, "metrics": birth},
        *(
            {
                "timestamp": 2,
                "seq": s % 256,
                "metrics": [{"alias": i, "type": "Double", "value": 2.0} for i in names],
            }
            for s in range(2, 258)
        ),
    )
    decoder = SparkplugDecoder()
    decoder.decode("spBv1.0/G/NBIRTH/edge", node)
    decoder.decode("spBv1.0/G/DBIRTH/edge/M01", device)
    start = time.perf_counter()
    for _ in range(args.rounds):
        for payload in data:
            decoder.decode("spBv1.0/G/DDATA/edge/M01", payload)
    seconds = time.perf_counter() - start
    messages = args.rounds * len(data)
    counts = decoder.counts()
    many = [
        {"name": f"m{i}", "alias": i, "type": "Double", "value": 1.0}
        for i in range(args.birth_metrics)
    ]
    (big,) = tahu_encode({"timestamp": 1, "seq": 0, "metrics": many})
    start = time.perf_counter()
    items = SparkplugDecoder().decode("spBv1.0/G/DBIRTH/edge/M02", big)
    birth_seconds = time.perf_counter() - start
    print(
        json.dumps(
            {
                "messages": messages,
                "readings": counts["readings"] - args.metrics,
                "seconds": round(seconds, 3),
                "messages_per_s": round(messages / seconds),
                "readings_per_s": round(messages * args.metrics / seconds),
                "seq_gaps": counts["seq_gaps"],
                "birth_bytes": len(big),
                "birth_items": len(items),
                "birth_seconds": round(birth_seconds, 3),
            }
        )
    )


if __name__ == "__main__":
    main()
