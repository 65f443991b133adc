"""How many NAB rows tie at the top of ``anomaly_score`` (replay row mode, default settings).

For each of the NAB development series (``--data``, default ../shared/data/nab) the replay's
row mode (``pipelines.backtest.backtest``, ``BacktestSettings(window=None)``) scores every row;
the script prints how many rows score exactly 1.0, how many score at least 1 - 1e-6 and how
many distinct scores the top 1 % of rows hold. ``--saturating`` puts the old tail back
(``1 - p`` rounding to 1.0 below p ~ 1e-16) in ``MultivariateZScore``, for comparison:

    .venv/bin/python benchmarks/score_ties.py
    .venv/bin/python benchmarks/score_ties.py --saturating
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import polars as pl

from floorsight.models import zscore
from floorsight.pipelines.backtest import BacktestSettings, backtest

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "nab")
    parser.add_argument("--saturating", action="store_true", help="the old 1 - p tail")
    args = parser.parse_args()
    if args.saturating:
        zscore.evidence_score = lambda log10_p: 1.0 - min(1.0, 10.0**log10_p)
    started = time.process_time()
    scores = []
    files = sorted((args.data / "data").rglob("*.csv"))
    for f in files:
        frame = pl.read_csv(f, try_parse_dates=True)
        scores.append(backtest(frame, "timestamp", settings=BacktestSettings(window=None)))
    s = pl.concat([out["anomaly_score"] for out in scores])
    k = max(1, len(s) // 100)
    top = s.sort(descending=True)[:k]
    print(
        json.dumps(
            {
                "tail": "saturating 1 - p" if args.saturating else "evidence_score",
                "files": len(files),
                "rows": len(s),
                "rows_at_1": int((s == 1.0).sum()),
                "rows_at_or_above_1_minus_1e-6": int((s >= 1 - 1e-6).sum()),
                "top_1pct_rows": k,
                "top_1pct_distinct": top.n_unique(),
                "max": s.max(),
                "cpu_s": round(time.process_time() - started, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
