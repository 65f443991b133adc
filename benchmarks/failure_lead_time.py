"""Failure prediction on the simulator: how long before a bearing failure the alert comes.

    .venv/bin/python benchmarks/failure_lead_time.py --seeds 3 4 5 --days 7 --machines 6

Per seed: a plant with a week of bearing wear (ending in failure and downtime), tool wear and
process upsets; 60 s window means of each machine's vibration; one DegradationMonitor per
machine, fed in time order; a failure in the maintenance log is learned when it happens (the
label's natural delay). An alert episode detects a failure when it opens between the fault's
start and its failure; lead time = failure time - alert time. Alerts outside every bearing
fault are false alerts. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import statistics
from datetime import UTC, datetime, timedelta

import polars as pl

from floorsight.models.failure import DegradationMonitor, FleetPrior
from floorsight.pipelines.context import SPEC_SCHEMA, ErpContext
from floorsight.records import FaultKind
from floorsight.simulate import PlantOptions, make_plant

T0 = datetime(2026, 2, 2, tzinfo=UTC)
KINDS = (FaultKind.BEARING_WEAR, FaultKind.TOOL_WEAR, FaultKind.PROCESS_UPSET)


def windows(plant, days: float) -> pl.DataFrame:
    ctx = ErpContext(plant.work_orders_frame(), pl.DataFrame(schema=SPEC_SCHEMA))
    parts = []
    t = T0
    while t < T0 + timedelta(days=days):
        r = plant.readings(t, t + timedelta(days=1)).filter(pl.col("sensor") == "vibration_mm_s")
        parts.append(
            ctx.join(r)
            .group_by_dynamic("ts", every="60s", group_by=["machine_id", "product"])
            .agg(pl.col("value").mean())
        )
        t += timedelta(days=1)
    return pl.concat(parts).sort("machine_id", "ts")


def run_seed(seed: int, days: float, machines: int, monitor_kw: dict) -> dict:
    plant = make_plant(
        PlantOptions(
            machines=machines,
            start=T0,
            horizon=timedelta(days=days),
            seed=seed,
            sample_hz=1,
            faults_per_machine_day=0.5,
            fault_kinds=KINDS,
        )
    )
    failures = [f for f in plant.truth() if f.failure_at is not None]
    bearing = [f for f in plant.truth() if f.kind is FaultKind.BEARING_WEAR]
    prior = FleetPrior()
    alerts: list[tuple[str, datetime]] = []
    for (machine,), part in windows(plant, days).partition_by("machine_id", as_dict=True).items():
        monitor = DegradationMonitor(prior=prior, **monitor_kw)
        fail_times = sorted(f.failure_at for f in failures if f.machine_id == machine)
        was = False
        for ts, product, value in part.select("ts", "product", "value").iter_rows():
            while fail_times and ts >= fail_times[0]:
                monitor.learn_failure()
                fail_times.pop(0)
                was = False
            v = monitor.update(product or "?", value)
            now = v is not None and v.alert
            if now and not was:
                alerts.append((machine, ts))
            was = now
    leads, matched = [], set()
    for f in failures:
        hits = [t for m, t in alerts if m == f.machine_id and f.start <= t <= f.failure_at]
        if hits:
            leads.append((f.failure_at - min(hits)).total_seconds() / 3600)
            matched.update((f.machine_id, t) for t in hits)
    false = [
        (m, t)
        for m, t in alerts
        if not any(f.machine_id == m and f.start <= t <= f.end for f in bearing)
    ]
    return {
        "seed": seed,
        "failures": len(failures),
        "detected": len(leads),
        "lead_hours": [round(x, 2) for x in leads],
        "alerts": len(alerts),
        "false_alerts": len(false),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[3, 4, 5])
    ap.add_argument("--days", type=float, default=7.0)
    ap.add_argument("--machines", type=int, default=6)
    ap.add_argument("--h-alert", type=float, default=4.0)
    args = ap.parse_args()
    runs = [run_seed(s, args.days, args.machines, {"h_alert": args.h_alert}) for s in args.seeds]
    leads = [x for r in runs for x in r["lead_hours"]]
    failures = sum(r["failures"] for r in runs)
    alerts = sum(r["alerts"] for r in runs)
    false = sum(r["false_alerts"] for r in runs)
    print(
        json.dumps(
            {
                "runs": runs,
                "failures": failures,
                "detected": len(leads),
                "recall": round(len(leads) / failures, 3) if failures else None,
                "precision": round((alerts - false) / alerts, 3) if alerts else None,
                "median_lead_hours": round(statistics.median(leads), 2) if leads else None,
                "min_lead_hours": round(min(leads), 2) if leads else None,
            }
        )
    )


if __name__ == "__main__":
    main()
