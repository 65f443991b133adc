"""Alert hygiene on the simulated fault week: alerts and incidents per detected fault, with and
without the flap hold, and what muting in maintenance does.

    .venv/bin/python benchmarks/alert_hygiene.py --seeds 21 --days 2 --machines 6

The plant, window features and per-machine :class:`MachineAlerting` of
``benchmarks/fault_week.py`` (its ``evaluate`` scores recall and precision), run once per flap
hold (``--holds``, seconds): every alert tracker gets that hold; the changed alert rows of each
hour go through the machine's :class:`IncidentTracker` (default gap) and :class:`MuteWindows`
fed the CMMS maintenance log. Per hold: the fault-week figures of the alerts, the same for the
incidents (an incident counts as raised when its first alert was), alerts and incidents per
detected fault, alerts muted, and detected faults whose every alert was muted.

Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import timedelta
from pathlib import Path

import polars as pl

from floorsight.alerts.engine import MachineAlerting
from floorsight.alerts.incidents import IncidentTracker
from floorsight.alerts.mute import MuteWindows
from floorsight.alerts.rules import ALERT_SCHEMA
from floorsight.models.base import Context
from floorsight.models.context import maintenance_events, spec_limits_dict
from floorsight.simulate import PlantOptions, make_plant
from floorsight.simulators.catalog import spec_limits_frame
from floorsight.simulators.erp import maintenance_log

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fault_week import T0, evaluate, plant_features


def run(features: pl.DataFrame, log: pl.DataFrame, hold: timedelta) -> tuple[dict, dict, int]:
    """alert_id -> last alert row (muted), incident_id -> last incident row, alerts muted."""
    specs = spec_limits_dict(spec_limits_frame())
    maintenance = maintenance_events(log)
    engines: dict[str, MachineAlerting] = {}
    incidents: dict[str, IncidentTracker] = {}
    mutes: dict[str, MuteWindows] = {}
    alerts: dict[str, dict] = {}
    rows: dict[str, dict] = {}
    hours = features.with_columns(hour=pl.col("window_start").dt.truncate("1h"))
    for (_, machine), part in hours.partition_by(
        ["hour", "machine_id"], as_dict=True, maintain_order=True
    ).items():
        engine = engines.get(machine)
        if engine is None:
            engine = engines[machine] = MachineAlerting()
            for tracker in engine.trackers.values():
                tracker.hold = hold
            incidents[machine] = IncidentTracker()
            mutes[machine] = MuteWindows()
        events = maintenance.get(machine, [])
        _, changed = engine.update(
            part.drop("hour").sort("window_start"), Context(machine, specs), events
        )
        if changed is None:
            continue
        mutes[machine].add_maintenance(e for e in events if e.start <= part["window_end"].max())
        written = [mutes[machine].apply(a) for a in changed.to_dicts()]
        alerts |= {a["alert_id"]: a for a in written}
        rows |= {i["incident_id"]: i for i in incidents[machine].update(written)}
    muted = sum("; muted: " in a["reason"] for a in alerts.values())
    return alerts, rows, muted


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[21])
    ap.add_argument("--days", type=float, default=2.0)
    ap.add_argument("--machines", type=int, default=6)
    ap.add_argument("--holds", type=float, nargs="+", default=[0.0, 600.0])
    ap.add_argument("--warmup-hours", type=float, default=24.0)
    ap.add_argument("--cache", type=Path, default=None, help="folder to cache window features")
    args = ap.parse_args()
    grace, warmup = timedelta(seconds=60), timedelta(hours=args.warmup_hours)
    report: dict = {"seeds": args.seeds, "days": args.days, "machines": args.machines}
    for hold_s in args.holds:
        totals = dict.fromkeys(
            ("faults", "detected", "alerts", "matched", "incidents", "incidents_matched"), 0
        ) | {"muted": 0, "changeover_alerts": 0, "faults_only_muted": 0}
        for seed in args.seeds:
            plant = make_plant(
                PlantOptions(
                    machines=args.machines,
                    start=T0,
                    horizon=timedelta(days=args.days),
                    seed=seed,
                    sample_hz=1,
                )
            )
            features = plant_features(plant, args.days, timedelta(seconds=10), args.cache)
            log = maintenance_log(plant)
            alerts, incidents, muted = run(
                features.sort("window_start"), log, timedelta(seconds=hold_s)
            )
            frame = pl.DataFrame(list(alerts.values()), schema=ALERT_SCHEMA)
            a = evaluate(plant, frame, grace, warmup)
            raised = {k: v["raised_at"] for k, v in alerts.items()}
            as_alerts = pl.DataFrame(
                [
                    {
                        "alert_id": i["incident_id"],
                        "machine_id": i["machine_id"],
                        "cause": i["causes"],
                        "raised_at": min(raised[x] for x in i["alert_ids"].split(",")),
                    }
                    for i in incidents.values()
                ]
            )
            inc = evaluate(plant, as_alerts, grace, warmup)
            detected = sum(v[0] for v in a["by_kind"].values())
            totals["faults"] += a["faults"]
            totals["detected"] += detected
            totals["alerts"] += a["alerts"]
            totals["matched"] += a["alerts"] - a["unmatched_alerts"]
            totals["incidents"] += inc["alerts"]
            totals["incidents_matched"] += inc["alerts"] - inc["unmatched_alerts"]
            totals["changeover_alerts"] += a["changeover_alerts"]
            totals["muted"] += muted
            totals["faults_only_muted"] += _only_muted(plant, frame, grace, warmup)
        d = totals["detected"] or 1
        report[f"hold_{hold_s:g}s"] = totals | {
            "recall": round(totals["detected"] / max(totals["faults"], 1), 3),
            "precision": round(totals["matched"] / max(totals["alerts"], 1), 3),
            "alerts_per_detected_fault": round(totals["alerts"] / d, 2),
            "incidents_per_detected_fault": round(totals["incidents"] / d, 2),
        }
    print(json.dumps(report, indent=1))


def _only_muted(plant, alerts: pl.DataFrame, grace: timedelta, warmup: timedelta) -> int:
    """Faults after the warm-up whose matching alerts were all muted (nobody paged)."""
    n = 0
    for f in plant.faults:
        if f.start < T0 + warmup or not alerts.height:
            continue
        hit = alerts.filter(
            (pl.col("machine_id") == f.machine_id)
            & (pl.col("raised_at") >= f.start)
            & (pl.col("raised_at") <= f.end + grace)
        )
        n += hit.height > 0 and bool(hit["reason"].str.contains("; muted: ").all())
    return n


if __name__ == "__main__":
    main()
