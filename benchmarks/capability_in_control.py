"""Process capability of the simulator's fault-free plant, as the ``capability`` model sees it.

    .venv/bin/python benchmarks/capability_in_control.py --seeds 43 44 --hours 24 --machines 4

Per seed: a plant of ``--machines`` machines without faults, sampled at ``--hz``, its 10 s
window features, and :class:`~floorsight.models.capability.CapabilityModel` (default
settings: Cpk level 1.33, 30 windows at least, rolling over 360 windows) per machine, fed an
hour of windows at a time. Reports, per quality characteristic, the quantiles of the rolling
Cpk (and Ppk) at every scored window, the share of scored windows flagged, the work orders'
final Cpk, and the model's cost per machine window (its ``score_segments`` time over the
windows it was given, on this plant's 4 or 8 sensors; ``--bench-sensors`` adds runs on a day
of segments of that many sensors, one or all of them with spec limits).

Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import UTC, datetime, timedelta

import polars as pl

from floorsight.features import window_features
from floorsight.models.base import Context
from floorsight.models.capability import CapabilityModel
from floorsight.models.context import spec_limits_dict
from floorsight.models.machine import Segment, by_machine, segments_of
from floorsight.pipelines.context import SPEC_SCHEMA, ErpContext
from floorsight.simulate import PlantOptions, make_plant
from floorsight.simulators.catalog import spec_limits_frame

T0 = datetime(2026, 3, 2, tzinfo=UTC)
WINDOW = timedelta(seconds=10)


def quantiles(xs: list[float]) -> dict[str, float]:
    if not xs:
        return {}
    xs = sorted(xs)
    at = {"min": 0.0, "p05": 0.05, "p25": 0.25, "median": 0.5, "p75": 0.75, "p95": 0.95}
    out = {k: round(xs[min(len(xs) - 1, int(q * len(xs)))], 3) for k, q in at.items()}
    out["max"] = round(xs[-1], 3)
    return out


def run_seed(seed: int, hours: int, machines: int, hz: int) -> tuple[dict, float, int]:
    plant = make_plant(
        PlantOptions(
            machines=machines,
            start=T0,
            horizon=timedelta(hours=hours),
            seed=seed,
            sample_hz=hz,
            faults_per_machine_day=0.0,
        )
    )
    ctx = ErpContext(plant.work_orders_frame(), pl.DataFrame(schema=SPEC_SCHEMA))
    specs = spec_limits_dict(spec_limits_frame())
    found: dict[str, dict[str, list]] = {}
    seconds, windows = 0.0, 0
    models: dict[str, CapabilityModel] = {}
    for h in range(hours):
        t = T0 + timedelta(hours=h)
        features = window_features(ctx.join(plant.readings(t, t + timedelta(hours=1))), WINDOW)
        for machine, segments in sorted(by_machine(segments_of(features)).items()):
            model = models.setdefault(machine, CapabilityModel())
            started = time.perf_counter()
            out = model.score_segments(segments, Context(machine, specs))
            seconds += time.perf_counter() - started
            windows += len(segments)
            for row in out.tables.get("capability", []):
                c = found.setdefault(row["characteristic"], {"cpk": [], "ppk": [], "final": []})
                if row["scope"] == "rolling" and row["n_windows"] >= model.min_windows:
                    c["cpk"].append(row["cpk"])
                    c["ppk"].append(row["ppk"])
                    c.setdefault("basis", set()).add(row["basis"])
                elif row["final"] and row["n_windows"] >= model.min_windows:
                    c["final"].append(row["cpk"])
            c = found.setdefault("_scores", {"scored": 0, "flagged": 0})
            c["scored"] += len(out.scores)
            c["flagged"] += sum(s["is_anomaly"] for s in out.scores)
    return found, seconds, windows


def bench_segments(sensors: int, specified: int, windows: int) -> tuple[list[Segment], Context]:
    """Segments of one machine with ``sensors`` sensors, ``specified`` of them with spec limits."""
    names = [f"s{i}" for i in range(sensors)]
    specs = {("P", s): (9.0, 10.0, 11.0) for s in names[:specified]}
    segments = []
    for i in range(windows):
        start = T0 + i * WINDOW
        key = ("M", start, start + WINDOW, f"WO-{i // 2000}", "P", "L")
        rows = {
            s: {"n": 100, "mean": 10.0 + 0.01 * ((i * 7 + j) % 13), "std": 0.1, "last": 10.0}
            for j, s in enumerate(names)
        }
        segments.append(Segment(key, rows))
    return segments, Context("M", specs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[43, 44])
    parser.add_argument("--hours", type=int, default=24)
    parser.add_argument("--machines", type=int, default=4)
    parser.add_argument("--hz", type=int, default=1)
    parser.add_argument("--bench-sensors", type=int, default=20)
    args = parser.parse_args()
    merged: dict[str, dict] = {}
    seconds = windows = 0
    for seed in args.seeds:
        found, s, w = run_seed(seed, args.hours, args.machines, args.hz)
        seconds += s
        windows += w
        for name, c in found.items():
            m = merged.setdefault(name, {})
            for k, v in c.items():
                if isinstance(v, list):
                    m.setdefault(k, []).extend(v)
                elif isinstance(v, set):
                    m.setdefault(k, set()).update(v)
                else:
                    m[k] = m.get(k, 0) + v
    scores = merged.pop("_scores", {"scored": 0, "flagged": 0})
    report = {
        "seeds": args.seeds,
        "hours": args.hours,
        "machines": args.machines,
        "sample_hz": args.hz,
        "scored_windows": scores["scored"],
        "flagged_share": round(scores["flagged"] / max(scores["scored"], 1), 4),
        "characteristics": {
            name: {
                "basis": sorted(c.get("basis", ())),
                "rolling_cpk": quantiles([x for x in c["cpk"] if x is not None]),
                "rolling_ppk": quantiles([x for x in c["ppk"] if x is not None]),
                "rolling_cpk_below_1.33": round(
                    sum(x is not None and x < 1.33 for x in c["cpk"]) / max(len(c["cpk"]), 1), 4
                ),
                "order_final_cpk": quantiles([x for x in c["final"] if x is not None]),
            }
            for name, c in sorted(merged.items())
        },
        "us_per_machine_window_sim": round(1e6 * seconds / max(windows, 1), 1),
    }
    n = args.bench_sensors
    for specified in (1, n) if n else ():
        segments, context = bench_segments(n, specified, 8640)
        model = CapabilityModel()
        started = time.perf_counter()
        for i in range(0, len(segments), 360):
            model.score_segments(segments[i : i + 360], context)
        elapsed = time.perf_counter() - started
        report[f"us_per_machine_window_{n}_sensors_{specified}_specified"] = round(
            1e6 * elapsed / len(segments), 1
        )
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
