"""Every contract command exists and runs."""

from __future__ import annotations

import polars as pl
from typer.testing import CliRunner

from floorsight.cli import app
from floorsight.storage import Database

runner = CliRunner()


def test_help_lists_the_contract_commands() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("demo", "simulate", "run", "dashboard", "replay", "bench", "eval"):
        assert command in result.output


def test_headless_demo_needs_a_duration() -> None:
    result = runner.invoke(app, ["demo", "--headless"])
    assert result.exit_code != 0


def test_simulate_then_run_replays_history_into_duckdb(tmp_path) -> None:
    out = tmp_path / "hist"
    result = runner.invoke(
        app,
        [
            *("simulate", "--out", str(out), "--hours", "0.2", "--seed", "9", "--hz", "10"),
            *("--faults-per-day", "0"),
        ],
    )
    assert result.exit_code == 0, result.output
    db = tmp_path / "f.duckdb"
    result = runner.invoke(
        app,
        [
            "run",
            "--history",
            str(out / "readings"),
            "--context",
            str(out / "erp"),
            "--db",
            str(db),
        ],
    )
    assert result.exit_code == 0, result.output
    n = Database(db).query("SELECT sum(n) AS n FROM features WHERE sensor = 'vibration_mm_s'")
    # every vibration reading the plant published (3 machines, 12 minutes, 10 Hz while running)
    history = pl.read_parquet(out / "readings").filter(pl.col("sensor") == "vibration_mm_s")
    assert n["n"][0] == history.height > 0.5 * 3 * 12 * 60 * 10
    # the rest of the ERP context is mirrored for notebooks: genealogy, lab results, ...
    database = Database(db)
    orders = pl.read_csv(out / "erp" / "work_orders.csv")
    genealogy = database.query("SELECT * FROM erp_genealogy")
    assert set(genealogy["work_order"]) == set(orders["work_order"])
    lab = database.query("SELECT * FROM erp_lab_results")
    assert lab.height == pl.read_csv(out / "erp" / "lab_results.csv").height
    assert "kind" in database.query("SELECT * FROM erp_maintenance_log").columns
    # and copied out to Parquet for long analyses, the live file left free
    copies = tmp_path / "copies"
    result = runner.invoke(
        app, ["export", "--db", str(db), "--out", str(copies), "--table", "features"]
    )
    assert result.exit_code == 0, result.output
    exported = pl.read_parquet(copies / "features.parquet")
    assert exported.height == database.query("SELECT count(*) AS n FROM features")["n"][0]
    unknown = ["export", "--db", str(db), "--out", str(copies), "--table", "x"]
    assert runner.invoke(app, unknown).exit_code == 2
    assert not (copies / "x.parquet").exists()


def test_live_sources_refuse_event_times_minutes_ahead_unless_run_is_told_otherwise() -> None:
    from datetime import timedelta
    from pathlib import Path

    from floorsight.runner import RunConfig, _live_rules

    default = RunConfig(history=None, context=Path("erp"), db=Path("f.duckdb"), mqtt="h:1883")
    assert _live_rules(default).max_future == timedelta(minutes=5)
    assert "--max-future-s" not in default.args()
    fast = RunConfig(
        history=None, context=Path("erp"), db=Path("f.duckdb"), mqtt="h:1883", max_future_s=3600
    )
    assert _live_rules(fast).max_future == timedelta(hours=1)
    # a cluster's child processes get the same window
    assert fast.args()[fast.args().index("--max-future-s") + 1] == "3600"
