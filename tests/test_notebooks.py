"""Every notebook runs end to end on a small simulated history, and leaves a champion behind.

The history: 6 machines for 16 simulated hours with bearing wear (6 failures spread over the
day, so both the training and the later test period hold failures), run through the pipeline
into a DuckDB file. Then each notebook (jupytext percent-format ``.py``) is executed cell by
cell in a real Python kernel (nbclient); a failing cell fails the test. The notebooks get the
database and a fresh MLflow store through environment variables; afterwards the store must
hold a registered model with the ``champion`` alias that the pipeline can load, and the
backtest notebook's run comparing that champion with the online engine on the same windows.
"""

from __future__ import annotations

import math
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jupytext
import mlflow
import polars as pl
import pytest
from bytewax.testing import run_main
from mlflow import MlflowClient
from nbclient import NotebookClient

from floorsight.models.champion import CHAMPION_ALIAS, FEATURES_TAG, THRESHOLD_TAG, load_champion
from floorsight.pipelines.context import ContextStore
from floorsight.pipelines.flow import build_flow
from floorsight.pipelines.replay import ReplaySource
from floorsight.records import FaultKind
from floorsight.simulate import PlantOptions, make_plant
from floorsight.simulators.history import write_history

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("[0-9][0-9]_*.py"))
START = datetime(2026, 1, 5, tzinfo=UTC)


@pytest.fixture(scope="module")
def history(tmp_path_factory) -> Path:
    """A pipeline database over a small simulated history."""
    root = tmp_path_factory.mktemp("history")
    plant = make_plant(
        PlantOptions(
            machines=6,
            start=START,
            horizon=timedelta(hours=16),
            seed=2,
            sample_hz=1,
            faults_per_machine_day=4,
            fault_kinds=(FaultKind.BEARING_WEAR,),
        )
    )
    assert sum(f.fails for f in plant.faults) >= 4
    write_history(plant, root, plant.start, plant.end)
    db = root / "floorsight.duckdb"
    source = ReplaySource(root / "readings", 1, 50_000)
    run_main(build_flow(source, ContextStore(root / "erp"), db))
    return db


def test_the_notebooks_run_in_this_order() -> None:
    assert [p.name for p in NOTEBOOKS] == [
        "01_explore_features.py",
        "02_train_models.py",
        "03_register_champion.py",
        "04_backtest.py",
    ]


def test_every_notebook_runs_and_a_champion_is_registered(history, tmp_path, monkeypatch):
    mlflow_uri = f"sqlite:///{tmp_path / 'mlflow' / 'mlflow.db'}"
    (tmp_path / "mlflow").mkdir()
    monkeypatch.setenv("FLOORSIGHT_DB", str(history))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_uri)
    monkeypatch.setenv("FLOORSIGHT_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("FLOORSIGHT_HISTORY", str(history.parent))  # the backtest's readings
    monkeypatch.delenv("FLOORSIGHT_JUDGE_FROM", raising=False)  # from the training cutoff
    # one OpenMP thread: on 2 shared cores, gradient boosting's spinning threads are many
    # times slower than one (measured: 3 s instead of 52 s for the same fit)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    for path in NOTEBOOKS:
        notebook = jupytext.read(path)
        client = NotebookClient(
            notebook,
            timeout=300,
            kernel_name="python3",
            resources={"metadata": {"path": str(tmp_path)}},
        )
        client.execute(env=dict(os.environ))  # raises CellExecutionError on a failing cell
        outputs = [o for c in notebook.cells if c.cell_type == "code" for o in c.outputs]
        assert not [o for o in outputs if o.output_type == "error"], path.name
        jupytext.write(notebook, tmp_path / f"{path.stem}.ipynb")  # executed copy, to inspect

    registry = MlflowClient(tracking_uri=mlflow_uri, registry_uri=mlflow_uri)
    version = registry.get_model_version_by_alias("floorsight-failure", CHAMPION_ALIAS)
    assert {THRESHOLD_TAG, FEATURES_TAG} <= set(version.tags)
    run = registry.get_run(version.run_id) if version.run_id else None
    if run is not None:  # the data's provenance is on the run that trained it
        assert {"data.table", "data.time_from", "data.time_to", "data.rows", "data.sha256"} <= set(
            run.data.params
        )
        assert run.data.metrics["test_average_precision"] > run.data.metrics["test_positive_rate"]
    champion = load_champion("floorsight-failure", mlflow_uri)
    assert champion is not None and champion.version == int(version.version)
    assert registry.get_model_version_by_alias("floorsight-quality", CHAMPION_ALIAS)

    # the backtest: one run, both sides counted on the same windows after the training cutoff
    assert run is not None
    mlflow.set_tracking_uri(mlflow_uri)
    (backtest,) = mlflow.search_runs(experiment_names=["floorsight-backtest"], output_format="list")
    params, metrics = backtest.data.params, backtest.data.metrics
    assert params["candidate"] == f"champion floorsight-failure v{version.version}"
    assert params["judged_from"] == run.data.params["split.cutoff"]
    comparison = pl.read_csv(
        mlflow.artifacts.download_artifacts(f"{backtest.info.artifact_uri}/backtest/comparison.csv")
    )
    assert comparison.columns == ["measure", "online engine", params["candidate"]]
    sides = {}
    for side, column in (("online", "online engine"), ("champion", params["candidate"])):
        values = sides[side] = dict(zip(comparison["measure"], comparison[column], strict=True))
        assert all(math.isfinite(v) for v in values.values()), (side, values)
        assert values["labelled faults judged"] >= 1
        assert 0 <= values["faults caught"] <= values["labelled faults judged"]
        assert values["alerts raised"] == values["true alerts"] + values["false alarms"]
        assert metrics[f"{side}.faults_caught"] == values["faults caught"]
    assert sides["online"]["windows judged"] == sides["champion"]["windows judged"] > 0
