"""How fast the flow's signal branch checks and tracks machine states and part counters.

    .venv/bin/python benchmarks/signal_tracking.py --machines 20 --days 1

Takes the simulated plant's MES signals of ``--days`` days (a state row per change, a counter
row per part, the states and counters at the start), checks them (``check_signals``) and turns
them into state changes and counted parts (``SignalTracker.push``) in one batch. Prints JSON:
signal rows, state changes, count rows and the seconds of each step.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from floorsight.pipelines.signals import SignalTracker, check_signals
from floorsight.pipelines.validate import ReadingRules
from floorsight.simulators import build_plant


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--machines", type=int, default=20)
    parser.add_argument("--days", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    t0 = datetime(2026, 1, 5, tzinfo=UTC)
    horizon = timedelta(days=args.days)
    plant = build_plant(args.machines, start=t0, horizon=horizon, seed=args.seed)
    signals = plant.signals(t0, t0 + horizon, initial=True)
    began = time.perf_counter()
    checked = check_signals(signals, ReadingRules(max_future=None))
    checked_at = time.perf_counter()
    rows = SignalTracker().push(checked.ok)
    tracked_at = time.perf_counter()
    print(
        json.dumps(
            {
                "signal_rows": signals.height,
                "dead_letters": 0 if checked.dead is None else checked.dead.height,
                "state_changes": 0 if rows.states is None else rows.states.height,
                "count_rows": 0 if rows.counts is None else rows.counts.height,
                "check_s": round(checked_at - began, 4),
                "track_s": round(tracked_at - checked_at, 4),
            }
        )
    )


if __name__ == "__main__":
    main()
