"""Failure prediction on the simulator: lead time, false alarms and RUL error at the alert.

    .venv/bin/python benchmarks/failure_lead_time.py --seeds 5 6 7 --days 7 --machines 6

Per seed: a plant of ``--machines`` machines (two CNC to every injection-moulding machine) at
1 Hz over ``--days`` days with about one fault per machine and day of every kind
(``simulators.faults.fault_scenario``: bearing wear ending in failure and downtime, tool wear,
process upsets, bad lots, stuck, spiking, missing and offset sensors). The pipeline's 10 s
window features of each machine go, an hour at a time and in time order, through the sensor
health model (its flagged windows are the quarantine) and :class:`MachineFailureModel` with the
ERP spec limits; each CMMS event is applied once it has ended, as the engine does (a logged
failure is the failure model's label).

- An **alert episode** opens at a flagged window when none is open and closes after
  ``--clear-after`` windows that are not flagged (the alert rule of the model); it is raised at
  the window's end.
- A failure is **detected** when an episode opens between its fault's start and the failure;
  **lead time** = failure time - the first such alert.
- **False alarms**: episodes that open outside every bearing fault of their machine, per
  machine-day (and by the fault kind active on the machine at the time, if any).
- **RUL at the alert**: the predicted ``rul_hours`` of the first alert against the actual hours
  to the failure: median absolute error, and the share of failures whose actual time falls in
  ``[rul_low_h, rul_high_h]``.

Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import statistics
from datetime import UTC, datetime, timedelta
from pathlib import Path

from fault_week import plant_features

from floorsight.models.base import Context, Maintenance
from floorsight.models.failure import MachineFailureModel
from floorsight.models.machine import by_machine, segments_of
from floorsight.models.sensor_health import SensorHealthModel
from floorsight.records import FaultKind
from floorsight.simulate import PlantOptions, make_plant
from floorsight.simulators.catalog import spec_limits_frame
from floorsight.simulators.erp import maintenance_log

T0 = datetime(2026, 4, 6, tzinfo=UTC)


def run_machine(segments, events: list[Maintenance], specs: dict, model_kw: dict) -> list[dict]:
    """The failure model's score rows of one machine, an hour of windows at a time."""
    model = MachineFailureModel(**model_kw)
    sensors = SensorHealthModel()
    due = sorted(events, key=lambda e: e.end)
    rows: list[dict] = []
    hours: dict[datetime, list] = {}
    for seg in segments:
        hours.setdefault(seg.start.replace(minute=0, second=0, microsecond=0), []).append(seg)
    for hour in hours.values():
        rest = hour
        while rest:
            k = len(rest)
            if due and rest[-1].start >= due[0].end:
                k = next(i for i, s in enumerate(rest) if s.start >= due[0].end)
            part, rest = rest[:k], rest[k:]
            if part:
                flagged = sensors.score_segments(part, Context(specs=specs)).scores
                quarantine = {r["window_start"] for r in flagged if r["is_anomaly"]}
                rows += model.score_segments(
                    part, Context(specs=specs, quarantine=quarantine)
                ).scores
            if rest:
                event = due.pop(0)
                model.maintenance(event)
                sensors.maintenance(event)
    return rows


def episodes(rows: list[dict], clear_after: int) -> list[dict]:
    """The first score row of each alert episode."""
    out, open_, calm = [], False, 0
    for r in rows:
        if r["is_anomaly"]:
            if not open_:
                out.append(r)
            open_, calm = True, 0
        elif open_:
            calm += 1
            if calm >= clear_after:
                open_ = False
    return out


def run_seed(seed: int, args, model_kw: dict) -> dict:
    plant = make_plant(
        PlantOptions(
            machines=args.machines,
            start=T0,
            horizon=timedelta(days=args.days),
            seed=seed,
            sample_hz=1,
            faults_per_machine_day=args.faults_per_day,
        )
    )
    features = plant_features(plant, args.days, timedelta(seconds=10), args.cache)
    specs = {(p, c): (lsl, t, usl) for p, c, lsl, t, usl in spec_limits_frame().iter_rows()}
    log = maintenance_log(plant)
    events: dict[str, list[Maintenance]] = {}
    for m, kind, start, end in log.select("machine_id", "kind", "start", "end").iter_rows():
        events.setdefault(m, []).append(Maintenance(kind, start, end))
    truth = plant.truth()
    failures = [f for f in truth if f.failure_at is not None]
    bearing = [f for f in truth if f.kind is FaultKind.BEARING_WEAR]
    alerts = []
    for machine, segs in by_machine(segments_of(features.sort("window_start"))).items():
        rows = run_machine(segs, events.get(machine, []), specs, model_kw)
        alerts += episodes(rows, args.clear_after)
    leads, rul_err, covered, at_alert = [], [], 0, []
    for f in failures:
        hits = [
            a
            for a in alerts
            if a["machine_id"] == f.machine_id and f.start <= a["window_end"] <= f.failure_at
        ]
        if not hits:
            continue
        first = min(hits, key=lambda a: a["window_end"])
        actual = (f.failure_at - first["window_end"]).total_seconds() / 3600
        leads.append(actual)
        e = json.loads(first["evidence"])
        at_alert.append(
            {
                "machine": f.machine_id,
                "lead_h": round(actual, 2),
                "rul_h": e["rul_hours"],
                "low": e["rul_low_h"],
                "high": e["rul_high_h"],
                "sensors": [s for s, _ in e["sensors"][:2]],
            }
        )
        if e["rul_hours"] is not None:
            rul_err.append(abs(e["rul_hours"] - actual))
            high = e["rul_high_h"] if e["rul_high_h"] is not None else float("inf")
            covered += e["rul_low_h"] <= actual <= high
    false, false_kinds = [], {}
    for a in alerts:
        m, t = a["machine_id"], a["window_end"]
        if any(f.machine_id == m and f.start <= t <= f.end for f in bearing):
            continue
        false.append(a)
        active = [str(f.kind) for f in truth if f.machine_id == m and f.start <= t <= f.end]
        kind = active[0] if active else "none"
        false_kinds[kind] = false_kinds.get(kind, 0) + 1
    return {
        "seed": seed,
        "failures": len(failures),
        "detected": len(leads),
        "lead_hours": [round(x, 2) for x in leads],
        "rul_abs_error_h": [round(x, 2) for x in rul_err],
        "rul_in_interval": covered,
        "at_alert": at_alert,
        "alerts": len(alerts),
        "false_alarms": len(false),
        "false_by_kind": false_kinds,
        "machine_days": args.machines * args.days,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[5, 6, 7])
    ap.add_argument("--days", type=float, default=7.0)
    ap.add_argument("--machines", type=int, default=6)
    ap.add_argument("--faults-per-day", type=float, default=1.0, help="per machine")
    ap.add_argument("--clear-after", type=int, default=3, help="windows to close an episode")
    ap.add_argument("--cache", type=Path, default=None, help="folder to cache window features")
    ap.add_argument(
        "--set", nargs="*", default=[], metavar="NAME=VALUE", help="model settings (floats)"
    )
    args = ap.parse_args()
    model_kw = {}
    for item in args.set:
        name, value = item.split("=")
        model_kw[name] = int(value) if value.isdigit() else float(value)
    runs = [run_seed(s, args, model_kw) for s in args.seeds]
    leads = [x for r in runs for x in r["lead_hours"]]
    errors = [x for r in runs for x in r["rul_abs_error_h"]]
    failures = sum(r["failures"] for r in runs)
    false = sum(r["false_alarms"] for r in runs)
    days = sum(r["machine_days"] for r in runs)
    by_kind: dict[str, int] = {}
    for r in runs:
        for k, v in r["false_by_kind"].items():
            by_kind[k] = by_kind.get(k, 0) + v
    print(
        json.dumps(
            {
                "settings": model_kw,
                "runs": runs,
                "failures": failures,
                "detected": len(leads),
                "median_lead_hours": round(statistics.median(leads), 2) if leads else None,
                "min_lead_hours": round(min(leads), 2) if leads else None,
                "false_alarms": false,
                "false_alarms_per_machine_day": round(false / days, 3) if days else None,
                "false_by_kind": by_kind,
                "rul_median_abs_error_h": round(statistics.median(errors), 2) if errors else None,
                "rul_in_interval": f"{sum(r['rul_in_interval'] for r in runs)} of {len(errors)}",
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
