"""False alarms of ``floorsight eval skab``'s detector on SKAB's anomaly-free recording.

    .venv/bin/python benchmarks/skab_anomaly_free.py [--data ../shared/data/skab]

SKAB's protocol does not score ``anomaly-free/anomaly-free.csv`` (it has no labels: every row
is normal). Here it measures the false-alarm rate in normal operation of the default detector
(``SKAB_SETTINGS`` read with ``SKAB_PREDICTION``, through the pipeline's engine), two ways:
the whole recording as one run (its first 400 rows fit, 9,005 scored), and cut into
experiment-sized pieces of 1,150 rows, each fitted on its own first 400 (the pieces are the
constraint of the selection protocol, ``benchmarks/skab_selection.py``). Prints one JSON
object: the share of scored rows flagged as outliers, and the changepoints reported.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import polars as pl

from floorsight.evaluation import skab


def _false_alarms(frame: pl.DataFrame, fit_rows: int) -> tuple[int, int, int]:
    out = skab.detect(frame).slice(fit_rows)
    return out.height, int(out["outlier"].sum()), int(out["changepoint_pred"].sum())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path("../shared/data/skab"))
    ap.add_argument("--piece", type=int, default=1150, help="rows per piece")
    args = ap.parse_args()
    frame = skab.read_skab(args.data / "anomaly-free" / "anomaly-free.csv")
    fit_rows = skab.FIT_ROWS
    report: dict = {
        "settings": skab.settings_json(skab.SKAB_SETTINGS),
        "prediction": skab.SKAB_PREDICTION,
    }
    scored, flagged, changes = _false_alarms(frame, fit_rows)
    report["whole"] = {
        "scored": scored,
        "far_pct": round(100 * flagged / scored, 2),
        "changepoints": changes,
    }
    pieces = [
        _false_alarms(frame.slice(start, args.piece), fit_rows)
        for start in range(0, frame.height - args.piece + 1, args.piece)
    ]
    scored = sum(p[0] for p in pieces)
    report["pieces"] = {
        "pieces": len(pieces),
        "scored": scored,
        "far_pct": round(100 * sum(p[1] for p in pieces) / scored, 2),
        "far_pct_each": [round(100 * p[1] / p[0], 2) for p in pieces],
        "changepoints": sum(p[2] for p in pieces),
    }
    print(json.dumps(report))


if __name__ == "__main__":
    main()
