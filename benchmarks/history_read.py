"""How fast ``read_history`` reads one history file: clean Parquet, clean CSV, hostile CSV.

    .venv/bin/python benchmarks/history_read.py --machines 3 --minutes 40 --bad-every 100

Writes one file of the simulated plant's readings in each form (the hostile CSV has one bad
cell in every ``--bad-every`` rows: text values, garbage and naive times, 2100), reads each
with ``read_history`` (best of ``--repeat``) and prints one JSON line per file: rows, readings,
dead letters, milliseconds and million rows per second.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl

from floorsight.pipelines.replay import read_history
from floorsight.simulators import build_plant

T0 = datetime(2026, 1, 5, 6, tzinfo=UTC)
_BAD_TS = ["noon", "2026-01-05T06:00:00", "2100-01-01T00:00:00Z", ""]
_BAD_VALUES = ["n/a", "1,5", "", "\x00"]


def hostile(frame: pl.DataFrame, every: int) -> pl.DataFrame:
    """``frame`` as text with one bad ts or value cell in every ``every`` rows."""
    text = frame.with_columns(
        pl.col("ts").dt.strftime("%Y-%m-%dT%H:%M:%S%.6f%:z"), pl.col("value").cast(pl.String)
    ).with_row_index("i")
    k = pl.col("i") // every
    hit = pl.col("i") % every == 0
    ts_hit, value_hit = hit & (k % 2 == 0), hit & (k % 2 == 1)
    bad_ts = pl.lit(pl.Series(_BAD_TS)).get((k // 2) % len(_BAD_TS))
    bad_value = pl.lit(pl.Series(_BAD_VALUES)).get((k // 2) % len(_BAD_VALUES))
    return text.with_columns(
        ts=pl.when(ts_hit).then(bad_ts).otherwise("ts"),
        value=pl.when(value_hit).then(bad_value).otherwise("value"),
    ).drop("i")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--machines", type=int, default=3)
    ap.add_argument("--minutes", type=float, default=40.0)
    ap.add_argument("--bad-every", type=int, default=100)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    end = T0 + timedelta(minutes=args.minutes)
    plant = build_plant(args.machines, start=T0, horizon=end - T0, seed=1)
    frame = plant.readings(T0, end)
    with tempfile.TemporaryDirectory() as tmp:
        files = {"parquet": Path(tmp) / "day.parquet", "csv": Path(tmp) / "day.csv"}
        frame.write_parquet(files["parquet"])
        frame.write_csv(files["csv"])
        files["hostile csv"] = Path(tmp) / "hostile.csv"
        hostile(frame, args.bad_every).write_csv(files["hostile csv"])
        for name, path in files.items():
            best, checked = float("inf"), None
            for _ in range(args.repeat):
                began = time.perf_counter()
                checked = read_history(path)
                best = min(best, time.perf_counter() - began)
            dead = 0 if checked.dead is None else checked.dead.height
            print(
                json.dumps(
                    {
                        "file": name,
                        "rows": frame.height,
                        "readings": checked.ok.height,
                        "dead_letters": dead,
                        "ms": round(best * 1000, 1),
                        "m_rows_per_s": round(frame.height / best / 1e6, 2),
                    }
                )
            )


if __name__ == "__main__":
    main()
