"""How often each SPC run rule and the Hotelling T² chart fire on fault-free simulated windows.

    .venv/bin/python benchmarks/spc_rates.py --seeds 31 32 --days 2 --machines 3

Per seed: a plant without faults at 1 Hz, 10 s window features, each machine's windows through
``SpcModel`` (every rule recorded, none paging) in Nelson and in Western Electric mode, with an
EWMA and a CUSUM chart on every characteristic, and through ``HotellingModel`` on all sensors
(``fallback = "sensors"``: the simulated products have one characteristic each). For each rule:
the share of charted phase II windows at which it fires (``rate``; the textbook rate for
independent normal points is beside it), and the alerts it would open on its own (runs of at
least two flagged windows in a row, the alert trackers' default) per machine and day.

Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import re
from datetime import UTC, datetime, timedelta

import polars as pl

from floorsight.features import window_features
from floorsight.models.base import Context
from floorsight.models.context import spec_limits_dict
from floorsight.models.hotelling import HotellingModel
from floorsight.models.machine import Coverage, by_machine, segments_of
from floorsight.models.spc_monitor import SPC, SpcModel
from floorsight.pipelines.context import SPEC_SCHEMA, ErpContext
from floorsight.simulators import build_plant
from floorsight.simulators.catalog import spec_limits_frame

T0 = datetime(2026, 4, 6, tzinfo=UTC)

#: per-point false-alarm rates of the rules on independent normal points (Nelson 1 and 5..8
#: from the normal distribution; runs and trends approximately, as the share of points that
#: complete or continue one)
TEXTBOOK = {
    "Nelson 1": 0.0027,
    "Nelson 2": 2 * 0.5**9,
    "Nelson 3": 2 / 720,
    "Nelson 5": 0.0015,
    "Nelson 6": 0.0028,
    "Western Electric 1": 0.0027,
    "Western Electric 4": 2 * 0.5**8,
}

RULE = re.compile(r"(Nelson \d|Western Electric \d|EWMA|CUSUM)")


def plant_features(seed: int, days: float, machines: int) -> pl.DataFrame:
    plant = build_plant(
        machines, start=T0, horizon=timedelta(days=days), seed=seed, faults=(), sample_hz=1
    )
    ctx = ErpContext(plant.work_orders_frame(), pl.DataFrame(schema=SPEC_SCHEMA))
    parts, t = [], T0
    while t < T0 + timedelta(days=days):
        t1 = t + timedelta(hours=1)
        parts.append(window_features(ctx.join(plant.readings(t, t1)), timedelta(seconds=10)))
        t = t1
    return pl.concat(parts)


def rule_runs(flags: list[bool]) -> int:
    """Runs of at least two flagged windows in a row: the alerts a rule would open alone."""
    runs, k = 0, 0
    for f in flags:
        k = k + 1 if f else 0
        runs += k == 2
    return runs


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, nargs="+", default=[31, 32])
    ap.add_argument("--days", type=float, default=2.0)
    ap.add_argument("--machines", type=int, default=3)
    args = ap.parse_args()
    context = Context(specs=spec_limits_dict(spec_limits_frame()))
    charted: dict[str, int] = {}
    fired: dict[str, int] = {}
    alerts: dict[str, int] = {}
    t2 = [0, 0]
    machine_days = 0.0
    for seed in args.seeds:
        features = plant_features(seed, args.days, args.machines).sort("window_start")
        for segments in by_machine(segments_of(features)).values():
            machine_days += args.days
            for rules in ("nelson", "western_electric"):
                characteristics = sorted({c for _, c in context.specs})
                model = SpcModel(rules=rules, page={}, ewma=characteristics, cusum=characteristics)
                points = model.score_segments(segments, context).tables.get(SPC.name, [])
                series: dict[str, list[bool]] = {}
                for p in points:
                    if p["center"] is None:
                        continue
                    hit = set(RULE.findall(p["rules"]))
                    names = {r for r in hit if r.startswith(("Nelson", "Western"))}
                    for name in ("EWMA", "CUSUM") if rules == "nelson" else ():
                        series.setdefault(name, []).append(name in hit)
                    for n in range(1, 9 if rules == "nelson" else 5):
                        name = f"{'Nelson' if rules == 'nelson' else 'Western Electric'} {n}"
                        series.setdefault(name, []).append(name in names)
                for name, flags in series.items():
                    charted[name] = charted.get(name, 0) + len(flags)
                    fired[name] = fired.get(name, 0) + sum(flags)
                    alerts[name] = alerts.get(name, 0) + rule_runs(flags)
            Coverage().mark(segments)
            rows = HotellingModel(fallback="sensors").score_segments(segments, context).scores
            phase2 = [r for r in rows if r["score"] > 0]
            t2[0] += sum(r["is_anomaly"] for r in phase2)
            t2[1] += len(phase2)
    report = {
        "seeds": args.seeds,
        "days": args.days,
        "machines": args.machines,
        "rules": {
            name: {
                "rate": round(fired[name] / charted[name], 4) if charted[name] else None,
                "textbook": round(TEXTBOOK[name], 4) if name in TEXTBOOK else None,
                "alerts_per_machine_day": round(alerts[name] / machine_days, 2),
            }
            for name in charted
        },
        "hotelling_sensors": {
            "alpha": HotellingModel().alpha,
            "flag_rate": round(t2[0] / t2[1], 4) if t2[1] else None,
            "windows": t2[1],
        },
    }
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
