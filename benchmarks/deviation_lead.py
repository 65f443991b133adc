"""Deviation prediction on the simulator: alerts before the lab, checked by the lab's verdict.

    .venv/bin/python benchmarks/deviation_lead.py --seeds 31 32 33 --days 7 --machines 6

Per seed: a plant of ``--machines`` machines at 1 Hz over ``--days`` days with about one fault
per machine and day of every kind (tool wear, process upsets and bad material lots move the
quality characteristic; ``simulators.faults``); the pipeline's 10 s window features
(``fault_week.plant_features``, cached with ``--cache``); the simulated ERP's lab results (every
25th part, known 2 to 6 hours after it was made: ``simulators.erp.lab_results``). One
:class:`DeviationModel` per machine is fed an hour of windows at a time with the ERP spec
limits, the machine's lab results and the windows its sensor health model quarantines (as the
engine runs them), in time order. From its rows:

- **checks**: the ``deviation_checks`` rows (a lab result of a window that was predicted).
  ``precision`` = checks predicted out of spec that the lab found out of spec / checks
  predicted out; ``recall`` = lab results out of spec whose window was predicted out / every
  lab result out of spec (predicted or not); ``recall_checked`` the same among the checks.
  ``hours_ahead`` of a true alert = the lab result's ``available_at`` - the end of the window
  that predicted it (when the prediction was made).
- **alerts**: the flags as the alert engine's tracker turns them into alerts (open after 2
  consecutive flagged windows, clear after 3 normal ones). An alert is confirmed when a part
  made between its first flagged window and its last is out of spec by the lab, refuted when
  the lab measured parts made then and all were in spec (alerts in which no part went to the
  lab are neither); ``alert_precision`` = confirmed / (confirmed + refuted);
  ``alert_lead_hours`` = the first out-of-spec lab result's ``available_at`` - the time the
  alert opened, per confirmed alert.
- **predicting_after_24h**: machine × product combinations that ran in the first 24 hours, and
  how many of them had a prediction by then.

``--min-labels``, ``--alert-on``, ``--coverage``, ``--learning-rate`` and
``--inline-gauge`` / ``--no-inline-gauge`` set the model. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

import polars as pl

from floorsight.models.base import Context
from floorsight.models.context import lab_results_by_machine
from floorsight.models.deviation_monitor import DeviationModel
from floorsight.models.machine import Coverage, segments_of
from floorsight.models.sensor_health import SensorHealthModel
from floorsight.simulators.catalog import spec_limits_frame
from floorsight.simulators.erp import lab_results

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fault_week import T0, plant_features, week_plant

#: the dataflow's window (``pipelines.flow``)
WINDOW = timedelta(seconds=10)
#: the alert engine's defaults (``alerts.engine.AlertSettings``)
OPEN_AFTER, CLEAR_AFTER = 2, 3


def run_models(features: pl.DataFrame, labs: dict, model_kw: dict) -> tuple[list, list, float]:
    """Score rows, check rows and seconds spent in the models, an hour of windows at a time."""
    specs = {
        (p, c): (lsl, target, usl)
        for p, c, lsl, target, usl in spec_limits_frame()
        .select("product", "characteristic", "lsl", "target", "usl")
        .iter_rows()
    }
    models: dict[str, tuple[Coverage, SensorHealthModel, DeviationModel]] = {}
    scores, checks, spent = [], [], 0.0
    hours = features.sort("window_start").with_columns(
        hour=pl.col("window_start").dt.truncate("1h")
    )
    for (_, machine), part in hours.partition_by(
        ["hour", "machine_id"], as_dict=True, maintain_order=True
    ).items():
        if machine not in models:
            models[machine] = (Coverage(), SensorHealthModel(), DeviationModel(**model_kw))
        coverage, sensors, model = models[machine]
        segments = segments_of(part.drop("hour"))
        context = Context(machine_id=machine, specs=specs, labs=labs.get(machine, []))
        # as the engine does: sensor health's flagged windows are quarantined for the models after
        coverage.mark(segments)
        flagged = sensors.score_segments(segments, context).scores
        context.quarantine.update(r["window_start"] for r in flagged if r["is_anomaly"])
        t = time.perf_counter()
        out = model.score_segments(segments, context)
        spent += time.perf_counter() - t
        scores += out.scores
        checks += out.tables.get("deviation_checks", [])
    return scores, checks, spent


def alerts_of(scores: list[dict]) -> list[tuple[str, datetime, datetime, datetime]]:
    """The alerts the engine's tracker raises from the flags (opens after ``OPEN_AFTER``
    consecutive flagged windows, clears after ``CLEAR_AFTER`` normal ones): (machine, first
    flagged window start, opened at, last flagged window end)."""
    alerts: list[list] = []
    state: dict[str, list] = {}  # machine -> [flagged run, normal run, run start, open alert]
    for r in sorted(scores, key=lambda r: (r["machine_id"], r["window_start"])):
        st = state.setdefault(r["machine_id"], [0, 0, None, None])
        if r["is_anomaly"]:
            st[0], st[1] = st[0] + 1, 0
            if st[0] == 1:
                st[2] = r["window_start"]
            if st[3] is None and st[0] >= OPEN_AFTER:
                st[3] = [r["machine_id"], st[2], r["window_end"], r["window_end"]]
                alerts.append(st[3])
            elif st[3] is not None:
                st[3][3] = r["window_end"]
        else:
            st[0], st[1] = 0, st[1] + 1
            if st[3] is not None and st[1] >= CLEAR_AFTER:
                st[3] = None
    return [tuple(a) for a in alerts]


def evaluate(scores: list[dict], checks: list[dict], lab_out_all: int) -> dict:
    tp = [c for c in checks if c["predicted_out"] and c["lab_out"]]
    flagged = sum(c["predicted_out"] for c in checks)
    lab_out_checked = sum(c["lab_out"] for c in checks)
    confirmed, refuted, leads = 0, 0, []
    for machine, first_start, opened, last_end in alerts_of(scores):
        mine = [
            c
            for c in checks
            if c["machine_id"] == machine and first_start <= c["part_made_at"] < last_end
        ]
        out = [c for c in mine if c["lab_out"]]
        if out:
            confirmed += 1
            leads.append(min(c["available_at"] for c in out) - opened)
        elif mine:
            refuted += 1
    hours = [c["hours_ahead"] for c in tp]
    return {
        "checks": len(checks),
        "checks_predicted_out": flagged,
        "checks_true": len(tp),
        "lab_out_checked": lab_out_checked,
        "lab_out_all": lab_out_all,
        "hours_ahead": hours,
        "alerts_confirmed": confirmed,
        "alerts_refuted": refuted,
        "alert_lead_hours": [x.total_seconds() / 3600 for x in leads],
    }


def predicting_after(scores: list[dict], hours: float) -> tuple[int, int]:
    """(machine × product combinations that ran in the first ``hours``, those that predicted)."""
    until = T0 + timedelta(hours=hours)
    ran, predicted = set(), set()
    for r in scores:
        if r["window_start"] < until:
            ran.add((r["machine_id"], r["product"]))
            if r["evidence"]:
                predicted.add((r["machine_id"], r["product"]))
    return len(ran), len(predicted)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[21, 22])
    ap.add_argument("--days", type=float, default=7.0)
    ap.add_argument("--machines", type=int, default=6)
    ap.add_argument("--min-labels", type=int, default=DeviationModel.min_labels)
    ap.add_argument("--alert-on", default=DeviationModel.alert_on, choices=("interval", "value"))
    ap.add_argument("--coverage", type=float, default=DeviationModel.coverage)
    ap.add_argument("--learning-rate", type=float, default=DeviationModel.learning_rate)
    ap.add_argument(
        "--inline-gauge",
        action=argparse.BooleanOptionalAction,
        default=DeviationModel.inline_gauge,
        help="read the characteristic's in-line measurement",
    )
    ap.add_argument("--cache", type=Path, default=None, help="folder to cache window features")
    args = ap.parse_args()
    model_kw = {
        "min_labels": args.min_labels,
        "alert_on": args.alert_on,
        "coverage": args.coverage,
        "learning_rate": args.learning_rate,
        "inline_gauge": args.inline_gauge,
    }
    runs, windows, spent = [], 0, 0.0
    for seed in args.seeds:
        plant = week_plant(seed, args.days, args.machines)
        features = plant_features(plant, args.days, WINDOW, args.cache)
        lab_frame = lab_results(plant, plant.parts)
        labs = lab_results_by_machine(lab_frame)
        # every lab result out of spec, whether its window was predicted or not
        lab_out = lab_frame.join(spec_limits_frame(), on=["product", "characteristic"]).filter(
            (pl.col("value") < pl.col("lsl")) | (pl.col("value") > pl.col("usl"))
        )
        scores, checks, s = run_models(features, labs, model_kw)
        windows += len(scores)
        spent += s
        ran, predicting = predicting_after(scores, 24.0)
        result = evaluate(scores, checks, lab_out.height)
        runs.append({"seed": seed, "ran_24h": ran, "predicting_24h": predicting, **result})
    tp = sum(r["checks_true"] for r in runs)
    flagged = sum(r["checks_predicted_out"] for r in runs)
    hours = [x for r in runs for x in r["hours_ahead"]]
    leads = [x for r in runs for x in r["alert_lead_hours"]]
    confirmed = sum(r["alerts_confirmed"] for r in runs)
    refuted = sum(r["alerts_refuted"] for r in runs)
    lab_out = sum(r["lab_out_all"] for r in runs)
    lab_out_checked = sum(r["lab_out_checked"] for r in runs)

    def rounded(values: list[float]) -> dict | None:
        if not values:
            return None
        return {
            "median": round(statistics.median(values), 2),
            "min": round(min(values), 2),
            "max": round(max(values), 2),
        }

    report = {
        "seeds": args.seeds,
        "days": args.days,
        "machines": args.machines,
        "model": model_kw,
        "checks": sum(r["checks"] for r in runs),
        "lab_out_of_spec": lab_out,
        "predicted_out_checks": flagged,
        "precision": round(tp / flagged, 3) if flagged else None,
        "recall": round(tp / lab_out, 3) if lab_out else None,
        "recall_checked": round(tp / lab_out_checked, 3) if lab_out_checked else None,
        "hours_ahead": rounded(hours),
        "alerts_confirmed": confirmed,
        "alerts_refuted": refuted,
        "alert_precision": round(confirmed / (confirmed + refuted), 3)
        if confirmed + refuted
        else None,
        "alert_lead_hours": rounded(leads),
        "predicting_after_24h": [
            sum(r["predicting_24h"] for r in runs),
            sum(r["ran_24h"] for r in runs),
        ],
        "model_us_per_window": round(spent / windows * 1e6, 1) if windows else None,
        "runs": [
            {k: v for k, v in r.items() if k not in ("hours_ahead", "alert_lead_hours")}
            for r in runs
        ],
    }
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
