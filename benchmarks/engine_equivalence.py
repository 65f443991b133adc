"""Every score row, alert row and online metric of the per-machine engine, to compare two trees.

    .venv/bin/python benchmarks/engine_equivalence.py dump OUT [--days 2] [--batch]
    .venv/bin/python benchmarks/engine_equivalence.py compare OUT_A OUT_B

``dump`` runs :class:`~floorsight.alerts.engine.MachineAlerting` (every registered model)
over the first ``--days`` of a
simulated week (seed 21, 6 machines at 1 Hz, every fault kind; ``benchmarks/fault_week.py``'s
plant) with the ERP spec limits, the CMMS maintenance log and the lab results, ten minutes of
windows at a time: per machine (``MachineAlerting.update``), or with ``--batch`` every machine's
ten minutes at once (``score_batch``, what the dataflow runs). It writes ``scores.parquet``,
``alerts.parquet`` and ``metrics.json`` to OUT. ``compare`` says whether two dumps are the same
(floats to 1e-9 relative). A speed-up of the models should leave them the same to the bit; run
``dump`` on the tree before (``git stash`` or a worktree) and after, then ``compare``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import timedelta
from pathlib import Path

import polars as pl
from polars.testing import assert_frame_equal

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fault_week import T0, plant_features

from floorsight.alerts.engine import AlertSettings, MachineAlerting, score_batch
from floorsight.models.base import Context
from floorsight.models.context import lab_results_by_machine, maintenance_events, spec_limits_dict
from floorsight.simulate import PlantOptions, make_plant
from floorsight.simulators.catalog import spec_limits_frame
from floorsight.simulators.erp import lab_results, maintenance_log


def dump(out: Path, days: float, batch: bool, cache: Path | None) -> None:
    opts = PlantOptions(machines=6, start=T0, horizon=timedelta(days=7), seed=21, sample_hz=1)
    plant = make_plant(opts)
    features = (
        plant_features(plant, 7, timedelta(seconds=10), cache)
        .filter(pl.col("window_start") < T0 + timedelta(days=days))
        .sort("window_start")
    )
    specs = spec_limits_dict(spec_limits_frame())
    maintenance = maintenance_events(maintenance_log(plant))
    labs = lab_results_by_machine(lab_results(plant, plant.parts))
    engines: dict[str, MachineAlerting] = {}
    scores, alerts = [], []
    chunks = features.with_columns(_chunk=pl.col("window_start").dt.truncate("10m"))
    began = time.perf_counter()
    if batch:
        for part in chunks.partition_by("_chunk", maintain_order=True, include_key=False):
            out_batch = score_batch(engines, part, AlertSettings(), specs, maintenance, labs)
            scores.append(out_batch.scores)
            if out_batch.alerts is not None:
                alerts.append(out_batch.alerts)
    else:
        for (_, machine), part in chunks.partition_by(
            ["_chunk", "machine_id"], as_dict=True, maintain_order=True
        ).items():
            engine = engines.setdefault(machine, MachineAlerting())
            context = Context(machine, specs, labs.get(machine, []))
            s, a = engine.update(part.drop("_chunk"), context, maintenance.get(machine, []))
            scores.append(s)
            if a is not None:
                alerts.append(a)
    print(f"scored in {time.perf_counter() - began:.1f} s", file=sys.stderr)
    out.mkdir(parents=True, exist_ok=True)
    pl.concat(scores, how="vertical_relaxed").write_parquet(out / "scores.parquet")
    pl.concat(alerts, how="vertical_relaxed").write_parquet(out / "alerts.parquet")
    metrics = {m: e.metrics() for m, e in sorted(engines.items())}
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1, sort_keys=True))


def compare(a: Path, b: Path) -> bool:
    same = True
    for table in ("scores", "alerts"):
        x, y = pl.read_parquet(a / f"{table}.parquet"), pl.read_parquet(b / f"{table}.parquet")
        try:
            assert_frame_equal(
                x.sort(x.columns), y.sort(y.columns), check_exact=False, rel_tol=1e-9
            )
            print(f"{table}: the same ({x.height} rows)")
        except AssertionError as err:
            same = False
            print(f"{table}: DIFFERENT ({x.height} vs {y.height} rows)\n{str(err)[:800]}")
    ma = json.loads((a / "metrics.json").read_text())
    mb = json.loads((b / "metrics.json").read_text())
    print("metrics: " + ("the same" if ma == mb else "DIFFERENT"))
    return same and ma == mb


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="command", required=True)
    d = sub.add_parser("dump")
    d.add_argument("out", type=Path)
    d.add_argument("--days", type=float, default=2.0)
    d.add_argument("--batch", action="store_true", help="score_batch over every machine")
    d.add_argument("--cache", type=Path, default=None, help="folder to cache window features")
    c = sub.add_parser("compare")
    c.add_argument("a", type=Path)
    c.add_argument("b", type=Path)
    args = ap.parse_args()
    if args.command == "dump":
        dump(args.out, args.days, args.batch, args.cache)
    else:
        sys.exit(0 if compare(args.a, args.b) else 1)


if __name__ == "__main__":
    main()
