"""Every fault kind over a simulated week: recall, precision and delay of the pipeline's alerts.

    .venv/bin/python benchmarks/fault_week.py --seeds 21 22 --days 7 --machines 6

Per seed: a plant of ``--machines`` machines (two CNC to every injection-moulding machine) at
1 Hz over ``--days`` days, with about one fault per machine and day drawn from every fault kind
(``simulators.faults.fault_scenario``: bearing wear ending in failure and downtime, tool wear,
process upsets, bad material lots, stuck, spiking, missing and offset sensors). The readings go
through the pipeline's own window features and per-machine :class:`MachineAlerting` (every
model of the registry, its alert rules and their hygiene, as the dataflow runs them), an hour
of windows at a time, with the ERP spec limits, the lab results, the CMMS maintenance log (an
event is known from its start; the models apply it once it has ended, as the dataflow does) and
the machines' states from the floor (the simulator's PackML states through the pipeline's
signal tracker: setups mute, ``alerts/mute.py``).

- **Alerts** are the paged ones (severity warning or critical, what the default routing
  sends); an ``info`` alert, muted (raised in planned maintenance or a setup) or of a cause
  that starts at info (``[alerts] severity``: capability and deviation by default), is stored
  and shown, counted apart (``shown_not_paged``, ``muted``), and detects nothing.
- An alert **detects** a fault when it is on the fault's machine and raised between the fault's
  start and ``--grace`` seconds after its end; delay = raised_at - fault start.
- **Precision** = alerts that detect some fault / all alerts.
- **Incidents** (``alerts/incidents.py``: one machine's alerts across causes) are judged the
  same way, an incident raised when its first paged alert was; ``per_detected_fault`` divides
  alerts and incidents by the faults detected.
- A fault is **observable** when its machine ran for at least half of it (process values are
  published only while a machine runs).
- **Changeover alerts**: alerts that match no fault and are raised within 15 minutes after a
  work order started (a planned changeover reported as a problem).
- **Warm-up**: the models learn from the plant's first ``--warmup-hours`` (a product's order
  references need a few orders of it); ``after_warmup`` leaves out the faults that start and
  the alerts raised in that time, ``all`` counts everything.

Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl

from floorsight.alerts.engine import AlertSettings, MachineAlerting
from floorsight.alerts.hygiene import AlertHygiene
from floorsight.alerts.rules import ALERT_SCHEMA
from floorsight.features import window_features
from floorsight.models.base import Context
from floorsight.models.context import lab_results_by_machine, maintenance_events, spec_limits_dict
from floorsight.models.machine import segments_of
from floorsight.pipelines.context import SPEC_SCHEMA, ErpContext
from floorsight.pipelines.signals import SignalTracker, check_signals
from floorsight.pipelines.validate import ReadingRules
from floorsight.simulate import PlantOptions, make_plant
from floorsight.simulators.catalog import spec_limits_frame
from floorsight.simulators.erp import lab_results, maintenance_log

T0 = datetime(2026, 4, 6, tzinfo=UTC)


def week_plant(seed: int, days: float, machines: int, **options):
    """The fault week's plant: ``machines`` machines at 1 Hz over ``days`` days from T0."""
    horizon = timedelta(days=days)
    return make_plant(PlantOptions(machines, T0, horizon, seed=seed, sample_hz=1, **options))


def plant_features(plant, days: float, window: timedelta, cache: Path | None) -> pl.DataFrame:
    """The plant's window features (cached by seed and size: the models are what changes)."""
    path = None
    if cache is not None:
        path = cache / f"features-{plant.seed}-{days:g}d-{len(plant.machines)}m.parquet"
        if path.exists():
            return pl.read_parquet(path)
    ctx = ErpContext(plant.work_orders_frame(), pl.DataFrame(schema=SPEC_SCHEMA))
    parts, t = [], T0
    while t < T0 + timedelta(days=days):
        t1 = t + timedelta(hours=1)
        parts.append(window_features(ctx.join(plant.readings(t, t1)), window))
        t = t1
    feats = pl.concat(parts)
    if path is not None:
        cache.mkdir(parents=True, exist_ok=True)
        feats.write_parquet(path)
    return feats


def machine_states(plant, end: datetime) -> dict[str, list[dict]]:
    """The plant's state changes as the pipeline's signal branch writes them, by machine."""
    checked = check_signals(plant.signals(T0, end, initial=True), ReadingRules(max_future=None))
    out: dict[str, list[dict]] = {}
    for row in SignalTracker().push(checked.ok).states.sort("since").iter_rows(named=True):
        out.setdefault(row["machine_id"], []).append(row)
    return out


def run_alerts(
    plant, features: pl.DataFrame, hygiene: AlertHygiene | None = None
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The alerts and incidents the pipeline's per-machine engine raises (each one's last row),
    fed an hour of windows at a time."""
    end = features["window_end"].max()  # the states as far as the windows go
    specs = spec_limits_dict(spec_limits_frame())
    maintenance = maintenance_events(maintenance_log(plant))
    labs = lab_results_by_machine(lab_results(plant, plant.parts))
    states = machine_states(plant, end)
    settings = AlertSettings(hygiene=hygiene or AlertHygiene())
    engines: dict[str, MachineAlerting] = {}
    alerts: dict[str, dict] = {}
    incidents: dict[str, dict] = {}
    hours = features.with_columns(hour=pl.col("window_start").dt.truncate("1h"))
    for (_, machine), part in hours.partition_by(
        ["hour", "machine_id"], as_dict=True, maintain_order=True
    ).items():
        engine = engines.setdefault(machine, MachineAlerting(settings))
        until = part["window_end"].max()
        # the floor's states as far as they have happened, the CMMS events that have begun
        engine.add_states([r for r in states.get(machine, []) if r["since"] < until])
        known = [m for m in maintenance.get(machine, []) if m.start < until]
        out = engine.update_segments(
            segments_of(part.drop("hour").sort("window_start")),
            Context(machine, specs, labs.get(machine, [])),
            known,
        )
        alerts |= {a["alert_id"]: a for a in out.alerts}
        incidents |= {i["incident_id"]: i for i in out.incidents}
    frame = pl.DataFrame(list(alerts.values()), schema=ALERT_SCHEMA).sort("raised_at")
    return frame, pl.DataFrame(list(incidents.values()))


def paged(alerts: pl.DataFrame) -> pl.DataFrame:
    """The alerts that page someone: warning or critical (an info alert is shown, not paged)."""
    return alerts.filter(pl.col("severity") != "info")


def incidents_as_alerts(alerts: pl.DataFrame, incidents: pl.DataFrame) -> pl.DataFrame:
    """Incidents with a paged alert, as rows :func:`evaluate` judges: raised when their first
    paged alert was, the causes of all their alerts."""
    raised = dict(paged(alerts).select("alert_id", "raised_at").iter_rows())
    rows = []
    for i in incidents.iter_rows(named=True) if incidents.height else ():
        times = [raised[a] for a in i["alert_ids"].split(",") if a in raised]
        if times:
            rows.append(
                {
                    "alert_id": i["incident_id"],
                    "machine_id": i["machine_id"],
                    "cause": i["causes"],
                    "raised_at": min(times),
                }
            )
    schema = {k: ALERT_SCHEMA[k] for k in ("alert_id", "machine_id", "cause", "raised_at")}
    return pl.DataFrame(rows, schema=schema)


def evaluate(plant, alerts: pl.DataFrame, grace: timedelta, warmup: timedelta) -> dict:
    """Faults found and alerts matched; faults and alerts in the warm-up are left out."""
    if alerts.height:
        alerts = alerts.filter(pl.col("raised_at") >= T0 + warmup)
    kinds: dict[str, list[int]] = {}
    observable = [0, 0]
    delays: dict[str, list[float]] = {}
    matched: set[str] = set()
    missed = []
    for f in plant.faults:
        if f.start < T0 + warmup:
            continue
        seen = plant.running_share(f.machine_id, f.start, f.end) >= 0.5
        k = kinds.setdefault(str(f.kind), [0, 0, 0, 0])  # detected, faults, obs detected, obs
        k[1] += 1
        k[3] += seen
        observable[1] += seen
        hit = (
            alerts.filter(
                (pl.col("machine_id") == f.machine_id)
                & (pl.col("raised_at") >= f.start)
                & (pl.col("raised_at") <= f.end + grace)
            )
            if alerts.height
            else alerts
        )
        if hit.height:
            k[0] += 1
            k[2] += seen
            observable[0] += seen
            delays.setdefault(str(f.kind), []).append(
                (hit["raised_at"].min() - f.start).total_seconds()
            )
            matched.update(hit["alert_id"].to_list())
        elif seen:
            missed.append(f"{f.fault_id} {f.kind} {f.machine_id} {f.start:%a %H:%M} {f.duration}")
    starts = plant.work_orders_frame().select("machine_id", "start")
    unmatched = alerts.filter(~pl.col("alert_id").is_in(list(matched))) if alerts.height else alerts
    changeover = 0
    for machine, raised in unmatched.select("machine_id", "raised_at").iter_rows():
        near = starts.filter(
            (pl.col("machine_id") == machine)
            & (pl.col("start") <= raised)
            & (pl.col("start") >= raised - timedelta(minutes=15))
        )
        changeover += near.height > 0
    return {
        "faults": sum(f.start >= T0 + warmup for f in plant.faults),
        "by_kind": kinds,
        "observable": observable,
        "alerts": alerts.height,
        "alerts_by_cause": dict(Counter(alerts["cause"].to_list())) if alerts.height else {},
        "unmatched_alerts": unmatched.height,
        "unmatched_by_cause": dict(Counter(unmatched["cause"].to_list()))
        if unmatched.height
        else {},
        "changeover_alerts": changeover,
        "delays_s": delays,
        "missed_observable": missed,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[21, 22])
    ap.add_argument("--days", type=float, default=7.0)
    ap.add_argument("--machines", type=int, default=6)
    ap.add_argument("--grace", type=float, default=60.0, help="seconds after a fault's end")
    ap.add_argument("--warmup-hours", type=float, default=24.0, help="models learn, not scored")
    ap.add_argument("--cache", type=Path, default=None, help="folder to cache window features")
    ap.add_argument("--hold-s", type=float, default=None, help="flap hold (default: the engine's)")
    args = ap.parse_args()
    grace = timedelta(seconds=args.grace)
    hygiene = AlertHygiene() if args.hold_s is None else AlertHygiene(hold_s=args.hold_s)
    report = {"seeds": args.seeds, "days": args.days, "machines": args.machines}
    report["hold_s"] = hygiene.hold_s
    runs = {"all": [], "after_warmup": []}
    incident_runs = {"all": [], "after_warmup": []}
    for seed in args.seeds:
        plant = week_plant(seed, args.days, args.machines)
        features = plant_features(plant, args.days, timedelta(seconds=10), args.cache)
        alerts, incidents = run_alerts(plant, features.sort("window_start"), hygiene)
        as_incidents = incidents_as_alerts(alerts, incidents)
        for name, warmup in (("all", 0.0), ("after_warmup", args.warmup_hours)):
            after = T0 + timedelta(hours=warmup)
            result = evaluate(plant, paged(alerts), grace, timedelta(hours=warmup))
            late = alerts.filter(pl.col("raised_at") >= after)
            result["shown_not_paged"] = late.height - result["alerts"]
            result["muted"] = late["reason"].str.contains("; muted: ", literal=True).sum()
            runs[name].append({"seed": seed, **result})
            incident_runs[name].append(
                evaluate(plant, as_incidents, grace, timedelta(hours=warmup))
            )
    report["warmup_hours"] = args.warmup_hours
    for name, rs in runs.items():
        summary = summarise(rs)
        inc = summarise(incident_runs[name])
        detected = summary["detected"] or 1
        summary["shown_not_paged"] = sum(r["shown_not_paged"] for r in rs)
        summary["muted"] = sum(int(r["muted"]) for r in rs)
        summary["incidents"] = {
            "incidents": inc["alerts"],
            "precision": inc["precision"],
            "changeover_incidents": inc["changeover_alerts"],
            "recall": inc["recall"],
        }
        summary["per_detected_fault"] = {
            "alerts": round(summary["alerts"] / detected, 2),
            "incidents": round(inc["alerts"] / detected, 2),
        }
        report[name] = summary
    print(json.dumps(report, indent=1))


def summarise(runs: list[dict]) -> dict:
    by_kind: dict[str, list[int]] = {}
    for r in runs:
        for kind, v in r["by_kind"].items():
            acc = by_kind.setdefault(kind, [0, 0, 0, 0])
            for i in range(4):
                acc[i] += v[i]
    faults = sum(r["faults"] for r in runs)
    detected = sum(v[0] for v in by_kind.values())
    obs = [sum(r["observable"][i] for r in runs) for i in (0, 1)]
    alerts = sum(r["alerts"] for r in runs)
    unmatched = sum(r["unmatched_alerts"] for r in runs)
    delays = {
        kind: round(statistics.median(d), 1)
        for kind in by_kind
        if (d := [x for r in runs for x in r["delays_s"].get(kind, [])])
    }
    causes: Counter = Counter()
    wrong: Counter = Counter()
    for r in runs:
        causes.update(r["alerts_by_cause"])
        wrong.update(r["unmatched_by_cause"])
    return {
        "faults": faults,
        "detected": detected,
        "recall": round(detected / faults, 3) if faults else None,
        "observable_faults": obs[1],
        "observable_detected": obs[0],
        "observable_recall": round(obs[0] / obs[1], 3) if obs[1] else None,
        "alerts": alerts,
        "precision": round((alerts - unmatched) / alerts, 3) if alerts else None,
        "changeover_alerts": sum(r["changeover_alerts"] for r in runs),
        "alerts_by_cause": dict(causes),
        "unmatched_by_cause": dict(wrong),
        "by_kind_detected_of_faults": {k: [v[0], v[1]] for k, v in sorted(by_kind.items())},
        "median_delay_s_by_kind": delays,
        "missed_observable": [m for r in runs for m in r["missed_observable"]],
    }


if __name__ == "__main__":
    main()
