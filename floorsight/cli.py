"""The ``floorsight`` command line: demo, simulate, run, dashboard, replay, bench, eval."""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated

import typer

from floorsight import config

app = typer.Typer(
    help="floorsight: stream analytics and predictive quality for manufacturing.",
    no_args_is_help=True,
    add_completion=False,
)


def _not_built(command: str, issue: int) -> None:
    typer.echo(
        f"floorsight {command}: not built yet (tracked in issue #{issue}); nothing was run.",
        err=True,
    )
    raise typer.Exit(code=2)


@app.command()
def demo(
    headless: Annotated[bool, typer.Option(help="Run without the dashboard.")] = False,
    minutes: Annotated[
        float | None, typer.Option(help="Stop after this many wall-clock minutes.")
    ] = None,
    speed: Annotated[float, typer.Option(help="Simulated seconds per wall second.")] = 10.0,
    machines: Annotated[int, typer.Option(help="Machines in the simulated plant.")] = 3,
    seed: Annotated[int, typer.Option(help="Seed of the plant and its faults.")] = 0,
    port: Annotated[int, typer.Option(help="Dashboard port on 127.0.0.1.")] = 8501,
    home: Annotated[
        Path | None, typer.Option(help="Folder for the demo's database and ERP files.")
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="End with the summary as one JSON line.")
    ] = False,
) -> None:
    """Start the simulated plant, the pipeline and the dashboard on this machine."""
    from floorsight.demo import DemoConfig, run_demo

    if headless and minutes is None:
        raise typer.BadParameter("--headless needs --minutes (how long to run)")
    cfg = DemoConfig(
        home=home or config.home() / "demo",
        machines=machines,
        minutes=minutes,
        speed=speed,
        seed=seed,
        headless=headless,
        port=port,
    )
    summary = run_demo(cfg, echo=typer.echo)
    if summary is None:
        return
    s = summary
    typer.echo(
        f"\nsimulated {s.simulated_s / 60:.1f} min of plant time (x{s.speed:g})\n"
        f"events read:         {s.events}\n"
        f"feature rows:        {s.feature_rows}\n"
        f"alerts raised:       {s.alerts} ({s.false_alerts} not matching an injected fault)\n"
        f"dead letters:        {s.dead_letters}\n"
        f"faults detected:     {s.faults_detected} of {s.faults_total}"
    )
    for f in s.faults:
        verdict = (
            f"detected {f['delay_s']:.0f} s (event time) after it started"
            if f["detected"]
            else "NOT detected"
        )
        typer.echo(f"  {f['fault_id']} {f['kind']} on {f['machine_id']}: {verdict}")
    if as_json:
        typer.echo(json.dumps(s.as_dict(), default=str))


@app.command()
def simulate(
    out: Annotated[
        Path | None, typer.Option(help="Write history, ERP context and truth here.")
    ] = None,
    machines: Annotated[int, typer.Option(help="Machines in the plant.")] = 3,
    hours: Annotated[float, typer.Option(help="Simulated hours of history.")] = 8.0,
    seed: Annotated[int, typer.Option(help="Seed.")] = 0,
    start: Annotated[
        str, typer.Option(help="Start of the history (ISO 8601, UTC).")
    ] = "2026-01-05T06:00:00+00:00",
    opcua: Annotated[str | None, typer.Option(help="Serve the plant over OPC-UA.")] = None,
) -> None:
    """Run the plant simulator: write a history to files (OPC-UA serving comes with #3)."""
    if opcua is not None or out is None:
        _not_built("simulate --opcua (live serving)", 3)
    import pyarrow.parquet as pq

    from floorsight.simulators import build_plant, fault_schedule

    t0 = datetime.fromisoformat(start).astimezone(UTC)
    horizon = timedelta(hours=hours)
    plant = build_plant(machines, start=t0, horizon=horizon, seed=seed, faults=())
    plant.faults = fault_schedule(
        t0,
        [m.machine_id for m in plant.machines],
        horizon,
        first_after=timedelta(minutes=30),
        every=timedelta(minutes=45),
        duration=timedelta(minutes=15),
    )
    out.mkdir(parents=True, exist_ok=True)
    plant.write_context(out / "erp")
    writer = None
    rows = 0
    t = t0
    while t < t0 + horizon:
        chunk = plant.readings(t, min(t + timedelta(hours=1), t0 + horizon)).sort("ts")
        table = chunk.to_arrow()
        writer = writer or pq.ParquetWriter(out / "readings.parquet", table.schema)
        writer.write_table(table)
        rows += chunk.height
        t += timedelta(hours=1)
    if writer is not None:
        writer.close()
    typer.echo(
        f"wrote {rows} readings, {len(plant.work_orders)} work orders and "
        f"{len(plant.faults)} faults to {out}"
    )


@app.command()
def run(
    history: Annotated[Path, typer.Option(help="Readings to replay (Parquet or CSV).")],
    context: Annotated[Path, typer.Option(help="Folder with work_orders.csv, spec_limits.csv.")],
    db: Annotated[Path, typer.Option(help="DuckDB file to write.")] = Path("var/floorsight.duckdb"),
    window_s: Annotated[float, typer.Option(help="Window length in seconds.")] = 10.0,
    batch_rows: Annotated[int, typer.Option(help="Readings per batch.")] = 50_000,
) -> None:
    """Run the pipeline over a readings file in event-time order (live sources come with #4)."""
    import polars as pl
    from bytewax.testing import run_main

    from floorsight.pipelines.context import ContextStore
    from floorsight.pipelines.flow import PipelineSettings, build_flow
    from floorsight.pipelines.sources import FrameSource
    from floorsight.pipelines.validate import ReadingRules

    def frames(worker_index: int, worker_count: int):
        reader = pl.read_parquet if history.suffix == ".parquet" else pl.read_csv
        data = reader(history).sort("ts")
        for offset in range(0, data.height, batch_rows):
            yield data.slice(offset, batch_rows)

    settings = PipelineSettings(
        window=timedelta(seconds=window_s), rules=ReadingRules(max_future=timedelta(days=36500))
    )
    run_main(build_flow(FrameSource(frames), ContextStore(context), db, settings))
    typer.echo(f"done: {db}")


@app.command()
def dashboard(
    db: Annotated[Path, typer.Option(help="DuckDB file the pipeline writes.")] = Path(
        "var/floorsight.duckdb"
    ),
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1.")] = 8501,
) -> None:
    """Serve the Streamlit dashboard on a database."""
    from floorsight.dashboards import streamlit_command

    typer.echo(f"floorsight dashboard: http://127.0.0.1:{port}")
    subprocess.run(streamlit_command(db, port), check=False)


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def replay() -> None:
    """Backtest the online detectors over a history file (issue #5)."""
    _not_built("replay", 5)


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def bench() -> None:
    """Performance benchmark, printed as JSON (issue #9)."""
    _not_built("bench", 9)


@app.command(
    name="eval", context_settings={"allow_extra_args": True, "ignore_unknown_options": True}
)
def evaluate() -> None:
    """Detection quality on SKAB with SKAB's protocol (issue #5)."""
    _not_built("eval", 5)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
