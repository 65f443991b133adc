"""Great Expectations guards the ERP context and the feature table.

The simulator's context passes every suite; each kind of breakage fails the suite of its table
with a report that names the rule and the offending rows; a context store keeps its last good
context when a reload fails; training refuses a feature table that fails its suite.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from datetime import timedelta
from pathlib import Path

import polars as pl
import pytest

from floorsight.features import expectations
from floorsight.features.expectations import (
    VALIDATION_RESULTS,
    DataValidationError,
    context_suites,
    reports_frame,
    validate_context,
    validate_context_in_worker,
    validate_features,
)
from floorsight.features.tables import FEATURES
from floorsight.models.training import load_training_features
from floorsight.pipelines.context import RECORD_TABLES, ContextStore
from floorsight.pipelines.flow import PipelineSettings, build_flow
from floorsight.simulate import PlantOptions, make_plant
from floorsight.simulators import build_plant
from floorsight.simulators.erp import erp_tables
from floorsight.storage import Database
from tests.conftest import T0
from tests.streaming import FedInput, wait_for

ALL_TABLES = {"work_orders", "spec_limits", *RECORD_TABLES}


@pytest.fixture(scope="module")
def erp() -> dict[str, pl.DataFrame]:
    plant = make_plant(
        PlantOptions(
            machines=3,
            start=T0,
            horizon=timedelta(hours=8),
            seed=3,
            sample_hz=1,
            faults_per_machine_day=4,
        )
    )
    tables = erp_tables(plant)
    assert tables["maintenance_log"].height and tables["lab_results"].height
    return tables


def test_the_simulators_context_passes_every_suite(erp) -> None:
    reports = validate_context(erp)
    assert {r.table_name for r in reports} == ALL_TABLES
    assert all(r.success for r in reports), "\n".join(r.report for r in reports)
    assert all(r.evaluated >= 2 for r in reports)
    # the foreign keys are part of the suites: e.g. lab results -> work orders, products
    lab = next(s for s in context_suites(erp) if s.table_name == "lab_results")
    assert {
        "work_order refers to an existing work_orders.work_order",
        "product refers to an existing products.product",
    } <= {r.description for r in lab.rules}


def _broken(erp: dict[str, pl.DataFrame], kind: str) -> dict[str, pl.DataFrame]:
    t = dict(erp)
    if kind == "lsl above usl":
        t["spec_limits"] = t["spec_limits"].with_columns(
            lsl=pl.when(pl.col("product") == "P-100").then(25.5).otherwise(pl.col("lsl"))
        )
    elif kind == "duplicate work order":
        t["work_orders"] = pl.concat([t["work_orders"], t["work_orders"].head(1)])
    elif kind == "unknown product":
        t["work_orders"] = t["work_orders"].with_columns(
            product=pl.when(pl.int_range(pl.len()) == 0)
            .then(pl.lit("P-999"))
            .otherwise(pl.col("product"))
        )
    elif kind == "batch ends before it starts":
        t["batches"] = t["batches"].with_columns(
            end=pl.when(pl.int_range(pl.len()) == 0)
            .then(pl.col("start") - timedelta(hours=1))
            .otherwise(pl.col("end"))
        )
    return t


@pytest.mark.parametrize(
    ("kind", "table", "rule", "names"),
    [
        ("lsl above usl", "spec_limits", "LSL < target", "product=P-100"),
        ("duplicate work order", "work_orders", "work_order is unique", "work_order=WO-"),
        (
            "unknown product",
            "work_orders",
            "product refers to an existing products.product",
            "P-999",
        ),
        ("batch ends before it starts", "batches", "start < end", "batch_id=B-"),
    ],
)
def test_a_broken_table_fails_its_suite_with_a_readable_report(
    erp, kind, table, rule, names
) -> None:
    reports = {r.table_name: r for r in validate_context(_broken(erp, kind))}
    failed = {name for name, r in reports.items() if not r.success}
    assert failed == {table}
    report = reports[table].report
    line = next(line for line in report.splitlines() if rule in line)
    assert "rows break it" in line and names in line, report


def test_the_pipeline_process_runs_no_suite_itself(tmp_path, erp) -> None:
    """The context store's suites run in a worker process: GX (seconds of pure Python) in a
    thread of the pipeline held up its other threads, and the OPC-UA source missed its server's
    readings. A fresh interpreter (this one has imported GX) refuses a first load that only
    the suites find broken with the verdict of :func:`validate_context`, without importing GX."""
    _write_context(tmp_path / "erp", _broken(erp, "unknown product"))
    code = textwrap.dedent(
        """
        import sys
        from floorsight.pipelines.context import ContextLoadError, ContextStore

        store = ContextStore(sys.argv[1])
        store.current()  # the rows pass; the suites run in the background
        try:
            store.current()
        except ContextLoadError as e:
            suites = [p for p in e.problems if p.row is None]
            fk = any("products.product" in p.rule for p in suites)
            print(sorted({p.source for p in suites}), fk)
        reports = store.take_reports()
        print(sorted(r.table_name for r in reports if not r.success), len(reports), store.good)
        print("great_expectations" in sys.modules)
        """
    )
    run = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "erp")],
        check=False,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr
    refused, verdict, gx_imported = run.stdout.splitlines()
    assert refused == "['work_orders.csv'] True"
    assert verdict == f"['work_orders'] {len(ALL_TABLES) + 1} False"  # and the load's own
    assert gx_imported == "False"


def test_a_worker_that_died_is_started_again(erp) -> None:
    first = validate_context_in_worker(erp)
    worker = expectations._worker._proc
    worker.kill()
    worker.wait()
    again = validate_context_in_worker(_broken(erp, "duplicate work order"))
    assert expectations._worker._proc.pid != worker.pid
    assert all(r.success for r in first)
    assert {r.table_name for r in again if not r.success} == {"work_orders"}


def _write_context(directory: Path, tables: dict[str, pl.DataFrame]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for name, frame in tables.items():
        frame.write_csv(directory / f"{name}.csv")
    later = time.time() + 5  # the store notices a change by mtime, even on coarse clocks
    for f in directory.glob("*.csv"):
        os.utime(f, (later, later))


def test_the_pipeline_keeps_running_on_the_last_good_context(tmp_path) -> None:
    """Reloads with LSL above USL, then with a duplicate work order, then without the work
    orders' ``end`` column (it ended the run) are rejected with a report while the flow runs
    on; a fixed context is taken again."""
    plant = build_plant(2, start=T0, horizon=timedelta(hours=2), seed=5, sample_hz=1, faults=())
    erp = erp_tables(plant)
    ctx_dir = tmp_path / "erp"
    _write_context(ctx_dir, erp)
    db = Database(tmp_path / "f.duckdb")
    fed = FedInput()
    flow = build_flow(
        fed.source(),
        ContextStore(ctx_dir),
        db.path,
        PipelineSettings(flush_interval=timedelta(milliseconds=200)),
    )
    # every new load also switches the product of the order running on M01 at the next step
    # (P-100 <-> P-200): had a load been taken, that step's features would show it
    steps = [T0 + timedelta(minutes=20 * i) for i in range(6)]
    swap = {"P-100": "P-200", "P-200": "P-100"}

    def product_at(t) -> str:
        wo = erp["work_orders"]
        return wo.filter(
            (pl.col("machine_id") == "M01") & (pl.col("start") <= t) & (pl.col("end") > t)
        )["product"][0]

    def swapped(tables, t) -> dict[str, pl.DataFrame]:
        wo = tables["work_orders"]
        running = (pl.col("machine_id") == "M01") & (pl.col("start") <= t) & (pl.col("end") > t)
        out = dict(tables)
        out["work_orders"] = wo.with_columns(
            product=pl.when(running)
            .then(pl.col("product").replace_strict(swap, default=pl.col("product")))
            .otherwise(pl.col("product"))
        )
        return out

    def mid(i: int):
        return steps[i] + timedelta(minutes=10)

    def feed_until(i: int) -> None:
        fed.feed(plant.readings(steps[i], steps[i + 1]))
        wait_for(
            db,
            "SELECT 1 FROM features WHERE window_end >= ?",
            [steps[i + 1] - timedelta(minutes=1)],
        )

    def script() -> None:
        feed_until(0)
        _write_context(ctx_dir, swapped(_broken(erp, "lsl above usl"), mid(1)))
        feed_until(1)
        _write_context(ctx_dir, swapped(_broken(erp, "duplicate work order"), mid(2)))
        feed_until(2)
        no_end = swapped(erp, mid(3))
        _write_context(ctx_dir, {**no_end, "work_orders": no_end["work_orders"].drop("end")})
        feed_until(3)
        _write_context(ctx_dir, swapped(erp, mid(4)))
        feed_until(4)

    fed.run(flow, script)

    def product(i: int) -> set[str]:
        return set(
            db.query(
                "SELECT DISTINCT product FROM features WHERE machine_id = 'M01' "
                "AND window_start <= ? AND window_end > ?",
                [mid(i), mid(i)],
            )["product"]
        )

    # the rejected loads changed nothing: the flow ran on with the first context ...
    assert product(1) == {product_at(mid(1))}
    assert product(2) == {product_at(mid(2))}
    assert product(3) == {product_at(mid(3))}
    # ... and took the fixed one
    assert product(4) == {swap[product_at(mid(4))]}
    assert db.query("SELECT max(window_end) AS t FROM features")["t"][0] >= steps[5] - timedelta(
        minutes=1
    )
    results = db.query(
        "SELECT table_name, success, report FROM validation_results "
        "WHERE NOT success AND suite <> 'erp.load' ORDER BY validated_at"
    )
    assert results["table_name"].to_list() == ["spec_limits", "work_orders"]
    spec_report, wo_report = results["report"].to_list()
    assert "LSL < target" in spec_report and "product=P-100" in spec_report
    assert "work_order is unique" in wo_report
    # each rejection, with the file, the line and the rule
    loads = db.query(
        "SELECT report FROM validation_results WHERE NOT success AND suite = 'erp.load' "
        "ORDER BY validated_at"
    )["report"].to_list()
    assert len(loads) == 3 and all("rejected whole" in r for r in loads)
    assert "spec_limits.csv line" in loads[0] and "limits out of order" in loads[0]
    assert "work_orders.csv line" in loads[1] and "duplicate work order" in loads[1]
    assert "work_orders.csv: lacks columns ['end']" in loads[2]
    rejected = db.query(
        "SELECT reason, raw FROM dead_letters WHERE source = 'context:load' ORDER BY received_at"
    )
    assert rejected.height == 3 and all("rejected" in r for r in rejected["reason"])
    # the first and the fixed load passed every suite, and are stored as well
    passed = db.query("SELECT count(*) AS n FROM validation_results WHERE success")["n"][0]
    assert passed >= 2 * 10 - 2


def _features() -> pl.DataFrame:
    t = [T0 + timedelta(seconds=10 * i) for i in range(6)]
    return pl.DataFrame(
        {
            "machine_id": ["M01"] * 6,
            "sensor": ["vibration_mm_s"] * 6,
            "window_start": t,
            "window_end": [x + timedelta(seconds=10) for x in t],
            "work_order": ["WO-1"] * 6,
            "product": ["P-100"] * 6,
            "material_lot": ["L"] * 6,
            "batch": ["B-1"] * 6,
            "n": [10] * 6,
            "mean": [2.0, 2.1, 2.0, 1.9, 2.2, 2.0],
            "std": [0.1] * 6,
            "min": [1.8] * 6,
            "max": [2.4] * 6,
            "last": [2.0] * 6,
            "slope": [0.0] * 6,
            "rms": [2.0] * 6,
        }
    )


def test_the_feature_suite_checks_ranges_nulls_and_freshness() -> None:
    good = _features()
    newest = good["window_end"].max()
    ok = validate_features(good, fresh_since=newest, ranges={"vibration_mm_s": (0.0, 50.0)})
    assert ok.success, ok.report

    stale = validate_features(good, fresh_since=newest + timedelta(minutes=5))
    assert not stale.success and "newest window ends at or after" in stale.report

    broken = good.with_columns(
        mean=pl.Series([None, 2.1, 99.0, 1.9, 2.2, 2.0]), std=pl.Series([0.1, -1.0] + [0.1] * 4)
    )
    report = validate_features(broken, ranges={"vibration_mm_s": (0.0, 50.0)})
    failed = report.report
    assert not report.success
    for rule in (
        "mean is present in 99% of rows",
        "std within [0, None]",
        "mean <= max",
        "vibration_mm_s mean within [0.0, 50.0]",
    ):
        assert rule in failed, failed


def test_training_refuses_a_feature_table_that_fails_its_suite(tmp_path) -> None:
    db = Database(tmp_path / "f.duckdb", [FEATURES, VALIDATION_RESULTS])
    db.create()
    db.upsert({"features": [_features()]})
    features, report = load_training_features(db.path)
    assert features.height == 6 and report.success
    # and the report can be stored with the others
    db.upsert({"validation_results": [reports_frame([report])]})
    assert db.query("SELECT success FROM validation_results")["success"].to_list() == [True]

    bad = _features().with_columns(
        window_start=pl.col("window_start") + timedelta(seconds=3),
        window_end=pl.col("window_start"),  # ends before it starts
    )
    db.upsert({"features": [bad]})
    with pytest.raises(DataValidationError, match="window_start < window_end"):
        load_training_features(db.path)


_VERDICTS = """
import json, sys
import polars as pl
from pathlib import Path
from floorsight.features.expectations import validate_context
tables = {p.stem: pl.read_parquet(p) for p in Path(sys.argv[1]).glob("*.parquet")}
reports = validate_context(tables)
print(json.dumps({"gx": "great_expectations" in sys.modules,
                  "reports": sorted([r.table_name, r.success, list(r.failures)] for r in reports)}))
"""


def test_a_restart_reuses_the_verdicts_of_unchanged_tables_without_starting_gx(
    erp, tmp_path
) -> None:
    import json
    import subprocess
    import sys

    tables = _broken(erp, "batch ends before it starts")  # one failing suite, kept as failing
    for name, frame in tables.items():
        frame.write_parquet(tmp_path / f"{name}.parquet")
    env = {**os.environ, "FLOORSIGHT_CACHE_DIR": str(tmp_path / "cache")}

    def run() -> dict:
        cmd = [sys.executable, "-c", _VERDICTS, str(tmp_path)]
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
        return json.loads(out.stdout.strip().splitlines()[-1])

    first, second = run(), run()
    assert first["gx"] and not second["gx"]  # the second process never imported GX
    assert second["reports"] == first["reports"]
    assert [t for t, ok, _ in first["reports"] if not ok] == ["batches"]
    # a changed table is validated again (GX starts), the others come from the cache
    erp_orders = tables["work_orders"].head(tables["work_orders"].height - 1)
    erp_orders.write_parquet(tmp_path / "work_orders.parquet")
    assert run()["gx"]


_PARENT = """
import os, sys, threading, time
from floorsight.features import expectations

# started from a thread that ends at once, as the first load's verdict thread does
threading.Thread(target=expectations.validate_context_in_worker, args=({},)).start()
time.sleep(0.5)
worker = expectations._worker._proc.pid
assert expectations.validate_context_in_worker({}) == []  # still the same worker
assert expectations._worker._proc.pid == worker
# a forked helper keeps the worker's pipes open: the worker never reads an end of input
helper = os.fork()
if helper == 0:
    time.sleep(120)
    os._exit(0)
print(worker, helper, flush=True)
time.sleep(120)
"""


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie waiting for its reaper does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def test_the_suites_worker_dies_with_a_killed_parent() -> None:
    """A SIGKILLed pipeline leaves no suites worker behind, even when another process still
    holds the worker's pipes (so it never reads an end of input)."""
    parent = subprocess.Popen(
        [sys.executable, "-c", _PARENT], stdout=subprocess.PIPE, text=True, env=os.environ
    )
    helper = None
    try:
        line = parent.stdout.readline()
        assert line, "the parent process ended before it started its worker"
        worker, helper = (int(x) for x in line.split())
        assert _alive(worker)
        parent.kill()
        parent.wait()
        deadline = time.monotonic() + 30
        while _alive(worker) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(worker), "the suites worker outlived its killed parent"
    finally:
        parent.kill()
        parent.wait()
        if helper is not None and _alive(helper):
            os.kill(helper, 9)
