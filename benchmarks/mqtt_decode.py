"""CPU cost of the MQTT source's decoding step: journaled messages to readings, per poll.

No broker and no flow: ``--messages`` journaled messages go through ``decode_messages`` (the
step each poll runs) as floorsight's own JSON, as mapped JSON with one reading per message, and
as mapped JSON with four sensors per message. Prints, per case, readings per second of CPU time
(the best of ``--repeat``; CPU time, so that other work on a shared machine counts less)::

    .venv/bin/python benchmarks/mqtt_decode.py [--messages 20000] [--repeat 15]

On a checkout from before the decoder step (commit 468d11f), the first case runs through the
old ``parse_messages`` instead.
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import UTC, datetime, timedelta

from floorsight.pipelines import mqtt_source
from floorsight.pipelines.mqtt_journal import Message

T0 = datetime(2026, 1, 5, 6, tzinfo=UTC)


def own_json(n: int) -> list[Message]:
    return [
        Message(
            i,
            f"plant/L1/M{i % 10:02d}/s{i % 4}",
            json.dumps(
                {
                    "machine_id": f"M{i % 10:02d}",
                    "sensor": f"s{i % 4}",
                    "ts": (T0 + timedelta(milliseconds=i)).isoformat(),
                    "value": i * 0.5,
                    "unit": "degC",
                }
            ).encode(),
            0.0,
        )
        for i in range(n)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    n = args.messages
    if hasattr(mqtt_source, "decode_messages"):
        from floorsight.pipelines.mqtt_mapping import JsonDecoder, MappedJsonDecoder, PayloadMap

        def run(decoder, messages):
            return mqtt_source.decode_messages(messages, decoder).readings.ok.height

        one = [
            Message(
                i,
                f"plant/L1/M{i % 10:02d}/s{i % 4}",
                json.dumps(
                    {"ts": (T0 + timedelta(milliseconds=i)).isoformat(), "value": i * 0.5}
                ).encode(),
                0.0,
            )
            for i in range(n)
        ]
        multi = [
            Message(
                i,
                f"factory/L1/M{i % 10:02d}",
                json.dumps(
                    {"t": 1_767_592_800_000 + i, "d": {f"s{k}": i * 0.5 + k for k in range(4)}}
                ).encode(),
                0.0,
            )
            for i in range(n // 4)
        ]
        four = PayloadMap.from_dict(
            {"sensors": "*", "fields": "d", "time": "t", "time_format": "epoch_ms"}
        )
        cases = {
            "own_json": (JsonDecoder(), own_json(n)),
            "mapped_one_reading_per_message": (MappedJsonDecoder(), one),
            "mapped_four_sensors_per_message": (
                MappedJsonDecoder(["factory/{line}/{machine_id}"], four),
                multi,
            ),
        }
    else:  # before the decoder step

        def run(decoder, messages):
            return mqtt_source.parse_messages(messages).ok.height

        cases = {"own_json": (None, own_json(n))}
    for name, (decoder, messages) in cases.items():
        best, readings = float("inf"), 0
        for _ in range(args.repeat):
            start = time.process_time()
            readings = run(decoder, messages)
            best = min(best, time.process_time() - start)
        print(
            json.dumps(
                {
                    "case": name,
                    "messages": len(messages),
                    "readings": readings,
                    "cpu_s": round(best, 4),
                    "readings_per_cpu_s": round(readings / best),
                }
            )
        )


if __name__ == "__main__":
    main()
