"""Throughput of each model: scored windows (or points) per second, on simulator features.

    .venv/bin/python benchmarks/model_throughput.py --hours 6

Builds 10 s window features of a 3-machine simulated plant (the dataflow's own feature code),
then times each model over them, single-threaded, and prints one JSON object. Windows are
machine windows (all sensors of one machine and one 10 s window), as the dataflow scores them.
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import UTC, datetime, timedelta

import polars as pl

from floorsight.alerts.engine import MachineAlerting
from floorsight.features import window_features
from floorsight.models import MachineAnomalyModel
from floorsight.models.deviation import DeviationPredictor
from floorsight.models.drift import FeatureDrift, ProcessDrift
from floorsight.models.failure import MachineFailureModel
from floorsight.models.order_drift import OrderDriftModel
from floorsight.models.order_offset import OrderOffsetModel
from floorsight.models.sensor_health import SensorHealthModel
from floorsight.models.spc import IndividualsChart
from floorsight.models.spc_monitor import SpcModel, spec_limits_dict
from floorsight.pipelines.context import SPEC_SCHEMA, ErpContext
from floorsight.simulators import build_plant
from floorsight.simulators.catalog import spec_limits_frame

T0 = datetime(2026, 3, 2, tzinfo=UTC)


def timed(fn) -> float:
    began = time.perf_counter()
    fn()
    return time.perf_counter() - began


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hours", type=float, default=6.0)
    args = ap.parse_args()
    plant = build_plant(3, start=T0, horizon=timedelta(hours=args.hours), seed=1, faults=())
    ctx = ErpContext(plant.work_orders_frame(), pl.DataFrame(schema=SPEC_SCHEMA))
    feats = window_features(
        ctx.join(plant.readings(T0, T0 + timedelta(hours=args.hours))), timedelta(seconds=10)
    )
    by_machine = {
        m: f.sort("window_start")
        for (m,), f in feats.partition_by("machine_id", as_dict=True).items()
    }
    windows = feats.select("machine_id", "window_start", "work_order").unique().height
    out = {"machine_windows": windows, "feature_rows": feats.height}

    def zscore() -> None:
        for f in by_machine.values():
            model = MachineAnomalyModel()
            for chunk in f.partition_by("window_start", maintain_order=True):
                model.score(chunk)

    def failure() -> None:
        for f in by_machine.values():
            MachineFailureModel().score(f)

    means = [
        (r["machine_id"], r["product"], r["sensor"], r["mean"])
        for r in feats.sort("window_start").iter_rows(named=True)
        if r["mean"] is not None
    ]

    def spc() -> None:
        charts: dict = {}
        for m, p, s, x in means:
            charts.setdefault((m, p, s), IndividualsChart()).update(x)

    def process_drift() -> None:
        detectors: dict = {}
        for m, p, s, x in means:
            detectors.setdefault(m, ProcessDrift()).update(p, {s: x})

    wide = feats.pivot("sensor", index=["machine_id", "window_start", "product"], values="mean")
    rows = [
        (r.pop("machine_id"), r.pop("window_start"), r.pop("product"), r)
        for r in wide.iter_rows(named=True)
    ]

    def feature_drift() -> None:
        fd: dict = {}
        for m, _, p, x in rows:
            fd.setdefault(m, FeatureDrift()).update(
                p, {k: v for k, v in x.items() if v is not None}
            )

    def deviation() -> None:
        dp = DeviationPredictor()
        for i, (_, _, _, x) in enumerate(rows):
            feats_x = {k: v for k, v in x.items() if v is not None}
            dp.predict(str(i), feats_x, 0.0, 1.0)
            dp.label(str(i), sum(feats_x.values()))

    specs = spec_limits_dict(spec_limits_frame())

    def per_window(make, call) -> None:
        for f in by_machine.values():
            model = make()
            for chunk in f.partition_by("window_start", maintain_order=True):
                call(model, chunk)

    def engine(batch: int):
        def run() -> None:
            for f in by_machine.values():
                model = MachineAlerting()
                chunks = f.partition_by("window_start", maintain_order=True)
                for i in range(0, len(chunks), batch):
                    model.update(pl.concat(chunks[i : i + batch]), specs)

        return run

    for name, fn, n in (
        (
            "sensor health (machine windows/s)",
            lambda: per_window(SensorHealthModel, lambda m, c: m.score(c)),
            windows,
        ),
        (
            "order offset (machine windows/s)",
            lambda: per_window(OrderOffsetModel, lambda m, c: m.score(c)),
            windows,
        ),
        (
            "order drift (machine windows/s)",
            lambda: per_window(OrderDriftModel, lambda m, c: m.score(c)),
            windows,
        ),
        (
            "SPC monitor with spec check (machine windows/s)",
            lambda: per_window(SpcModel, lambda m, c: m.score(c, specs)),
            windows,
        ),
        ("all models + alert rules, 1 window per call (machine windows/s)", engine(1), windows),
        ("all models + alert rules, 30 windows per call (machine windows/s)", engine(30), windows),
        ("zscore anomaly (machine windows/s)", zscore, windows),
        ("failure risk (machine windows/s)", failure, windows),
        ("SPC individuals chart (points/s)", spc, len(means)),
        ("process drift ADWIN (points/s)", process_drift, len(means)),
        ("feature drift PSI+KS (machine windows/s)", feature_drift, len(rows)),
        ("deviation predictor (predict+learn/s)", deviation, len(rows)),
    ):
        out[name] = round(n / timed(fn))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
