"""``floorsight replay`` / ``pipelines.backtest``: the pipeline's engine over a history."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import polars as pl
import pytest
from typer.testing import CliRunner

from floorsight.alerts.engine import AlertSettings, MachineAlerting
from floorsight.cli import app
from floorsight.features import window_features
from floorsight.models.base import Context
from floorsight.models.machine import segments_of
from floorsight.pipelines.backtest import BacktestSettings, backtest, parse_window

runner = CliRunner()
T0 = datetime(2026, 3, 2, tzinfo=UTC)


def _wide(n: int = 900, spike_at: tuple[int, ...] = (700,), machines=("M1",)) -> pl.DataFrame:
    """Two smooth sensors with small deterministic noise, 1 row per second per machine; a
    spike on both at each ``spike_at`` (lasting 25 rows)."""
    rows = []
    for m in machines:
        for i in range(n):
            a = 10 + 0.1 * math.sin(i / 37) + 0.05 * math.sin(i * 12.9898)
            b = 5 + 0.1 * math.cos(i / 53) + 0.05 * math.sin(i * 78.233)
            if any(s <= i < s + 25 for s in spike_at):
                a, b = a + 3, b - 3
            rows.append({"ts": T0 + timedelta(seconds=i), "machine": m, "a": a, "b": b})
    return pl.DataFrame(rows)


def test_the_contract_columns_one_row_per_input_row_in_time_order() -> None:
    frame = _wide()
    shuffled = frame.sample(fraction=1.0, shuffle=True, seed=1)
    out = backtest(shuffled, "ts", "machine", settings=BacktestSettings(window=None))
    assert out.columns == ["ts", "machine", "anomaly_score", "is_anomaly", "changepoint", "alert"]
    assert out.height == frame.height
    assert out["ts"].to_list() == frame["ts"].to_list()  # replayed in time order
    assert out["anomaly_score"].is_between(0, 1).all()
    flagged = out.filter(pl.col("is_anomaly") == 1)["ts"]
    spike = [T0 + timedelta(seconds=i) for i in range(700, 725)]
    assert flagged.len() > 0 and set(flagged.to_list()) <= set(spike)
    # the alert rule: open after 2 flagged windows, cleared after 3 normal ones
    alerted = out.filter(pl.col("alert").str.contains("anomaly"))["ts"].to_list()
    assert alerted and alerted[0] == flagged[1]
    changes = out.filter(pl.col("changepoint") == 1)["ts"].to_list()
    assert len(changes) == 2 and changes[0] == alerted[0] and changes[1] > alerted[-1]


def test_windowed_scores_are_the_engines_own() -> None:
    """The default window mode gives exactly what MachineAlerting gives on the pipeline's window
    features of the same readings (the flow's score step)."""
    frame = _wide(spike_at=(400, 700))
    out = backtest(frame, "ts", "machine")
    readings = frame.unpivot(
        index=["ts", "machine"], on=["a", "b"], variable_name="sensor", value_name="value"
    ).select(
        machine_id="machine",
        sensor="sensor",
        ts="ts",
        value="value",
        work_order=pl.lit(""),
        product=pl.lit(""),
        material_lot=pl.lit(""),
        batch=pl.lit(""),
    )
    features = window_features(readings.sort("ts"), timedelta(seconds=10))
    engine = MachineAlerting(AlertSettings())
    got = engine.update_segments(segments_of(features), Context("M1"))
    anomaly = {r["window_start"]: r for r in got.scores if r["model"] == "anomaly"}
    assert any(r["is_anomaly"] for r in anomaly.values())
    for row in out.iter_rows(named=True):
        start = row["ts"].replace(second=row["ts"].second // 10 * 10)
        want = anomaly.get(start)
        assert row["anomaly_score"] == (want["score"] if want else 0.0)
        assert row["is_anomaly"] == (int(want["is_anomaly"]) if want else 0)


def test_long_and_wide_layouts_give_the_same_windows() -> None:
    frame = _wide(machines=("M1", "M2"))
    wide = backtest(frame, "ts", "machine")
    long = frame.unpivot(
        index=["ts", "machine"], on=["a", "b"], variable_name="sensor", value_name="value"
    ).rename({"machine": "machine_id"})
    out = backtest(long, "ts")
    assert out.height == long.height and "machine_id" in out.columns
    per_window = (
        out.group_by("machine_id", "ts")
        .agg(pl.col("anomaly_score").first())
        .sort("machine_id", "ts")
    )
    assert (
        per_window["anomaly_score"].to_list()
        == wide.sort("machine", "ts")["anomaly_score"].to_list()
    )


def test_entities_have_their_own_engines() -> None:
    both = _wide(machines=("M1", "M2"))
    alone = _wide(machines=("M2",))
    together = backtest(both, "ts", "machine", settings=BacktestSettings(window=None))
    single = backtest(alone, "ts", "machine", settings=BacktestSettings(window=None))
    m2 = together.filter(pl.col("machine") == "M2")
    assert m2["anomaly_score"].to_list() == single["anomaly_score"].to_list()


def test_a_numeric_time_and_rows_at_one_time_are_each_a_window_in_row_mode() -> None:
    frame = _wide(300, spike_at=()).with_columns(cycle=pl.int_range(300) // 2).drop("ts")
    out = backtest(frame, "cycle", "machine", settings=BacktestSettings(window=None))
    assert out.height == 300 and out["cycle"].to_list() == frame["cycle"].to_list()


def test_work_orders_in_the_frame_are_context_and_a_changeover_is_no_anomaly() -> None:
    """A wide frame with a work_order/product column: the models re-base at a changeover."""
    frame = _wide(1200, spike_at=()).with_columns(
        a=pl.when(pl.int_range(pl.len()) >= 600).then(pl.col("a") + 2).otherwise(pl.col("a")),
    )
    plain = backtest(frame, "ts", "machine")
    orders = frame.with_columns(
        work_order=pl.when(pl.int_range(pl.len()) >= 600)
        .then(pl.lit("WO-2"))
        .otherwise(pl.lit("WO-1")),
        product=pl.lit("P"),
    )
    with_context = backtest(orders, "ts", "machine")
    assert plain["is_anomaly"].sum() > 0  # a level shift without context is an anomaly
    assert with_context["is_anomaly"].sum() == 0


def test_models_settings_reach_the_engine() -> None:
    frame = _wide(spike_at=(400, 700))
    default = backtest(frame, "ts", "machine", settings=BacktestSettings(window=None))
    strict = BacktestSettings(window=None, models={"anomaly": {"threshold": 1.0 - 1e-9}})
    fewer = backtest(frame, "ts", "machine", settings=strict)
    assert fewer["is_anomaly"].sum() < default["is_anomaly"].sum()
    with pytest.raises(ValueError, match="no model"):
        BacktestSettings(score_model="nope")
    with pytest.raises(ValueError, match="has no setting"):
        BacktestSettings(models={"anomaly": {"nope": 1}})


def test_bad_input_names_the_problem() -> None:
    frame = _wide(50)
    with pytest.raises(ValueError, match="no column 'nope'"):
        backtest(frame, "nope")
    with pytest.raises(ValueError, match="label delay"):
        backtest(frame, "ts", label_col="a", label_delay=-1)
    with pytest.raises(ValueError, match="no numeric sensor"):
        backtest(frame.select("ts", "machine"), "ts", "machine")
    with pytest.raises(ValueError, match="row 3"):
        backtest(frame.with_columns(frame["ts"].scatter(2, None)), "ts")
    with pytest.raises(ValueError, match="bad window"):
        parse_window("ten seconds")
    assert parse_window("500ms") == timedelta(milliseconds=500)


def test_the_cli_writes_the_contract_and_refuses_bad_options(tmp_path) -> None:
    path = tmp_path / "h.csv"
    _wide().sample(fraction=1.0, shuffle=True, seed=2).write_csv(path)
    out = tmp_path / "out.csv"
    args = ["replay", str(path), "--time-col", "ts", "--entity-col", "machine", "--out", str(out)]
    result = runner.invoke(app, [*args, "--window", "row", "--time-zone", "UTC"])
    assert result.exit_code == 0, result.output
    got = pl.read_csv(out)
    assert got.columns == ["ts", "machine", "anomaly_score", "is_anomaly", "changepoint", "alert"]
    assert got.height == 900 and got["is_anomaly"].sum() > 0
    models = tmp_path / "models.toml"
    models.write_text("[anomaly]\nthreshhold = 0.999\n")
    bad = runner.invoke(app, [*args, "--models", str(models), "--time-zone", "UTC"])
    assert bad.exit_code == 2 and "threshhold" in bad.output
    assert runner.invoke(app, [*args, "--window", "x"]).exit_code == 2
    assert runner.invoke(app, [*args, "--score-model", "nope"]).exit_code == 2


def test_the_projects_own_history_with_its_context_raises_no_alert(tmp_path) -> None:
    """floorsight's long history of a fault-free plant, replayed with its ERP context (work
    orders joined as the pipeline joins them): no alert, few flagged windows."""
    sim = tmp_path / "sim"
    made = runner.invoke(
        app,
        [
            *("simulate", "--out", str(sim), "--machines", "2", "--hours", "4"),
            *("--seed", "5", "--faults-per-day", "0"),
        ],
    )
    assert made.exit_code == 0, made.output
    history = next((sim / "readings").iterdir())
    out = tmp_path / "out.csv"
    result = runner.invoke(
        app,
        [
            *("replay", str(history), "--time-col", "ts", "--out", str(out)),
            *("--context", str(sim / "erp")),
        ],
    )
    assert result.exit_code == 0, result.output
    got = pl.read_csv(out)
    assert got.height == pl.read_parquet(history).height
    assert (
        set(got["machine_id"].unique()) == {"cnc-01", "cnc-02"} or got["machine_id"].n_unique() == 2
    )
    assert (got["alert"].fill_null("") == "").all()
    assert got["is_anomaly"].mean() < 0.005


def test_any_sensor_name_is_a_sensor_and_reserved_names_are_refused() -> None:
    """A wide frame's sensors may be called anything (NAB's one column is ``value``)."""
    frame = _wide(300).rename({"a": "value", "b": "sensor"})
    out = backtest(frame, "ts", "machine", settings=BacktestSettings(window=None))
    same = backtest(_wide(300), "ts", "machine", settings=BacktestSettings(window=None))
    assert out["anomaly_score"].to_list() == same["anomaly_score"].to_list()
    with pytest.raises(ValueError, match="backtest's own"):
        backtest(frame.rename({"value": "_t"}), "ts", "machine")
