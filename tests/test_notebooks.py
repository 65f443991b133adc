"""Every notebook runs end to end on a small simulated history, and leaves a champion behind.

The history: 6 machines for 16 simulated hours with bearing wear (6 failures spread over the
day, so both the training and the later test period hold failures), run through the pipeline
into a DuckDB file. Then each notebook (jupytext percent-format ``.py``) is executed cell by
cell in a real Python kernel (nbclient); a failing cell fails the test. The notebooks get the
database and a fresh MLflow store through environment variables; afterwards the store must
hold a registered model with the ``champion`` alias that the pipeline can load.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jupytext
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


def test_there_are_three_notebooks() -> None:
    assert [p.name for p in NOTEBOOKS] == [
        "01_explore_features.py",
        "02_train_models.py",
        "03_register_champion.py",
    ]


def test_every_notebook_runs_and_a_champion_is_registered(history, tmp_path, monkeypatch):
    mlflow_uri = f"sqlite:///{tmp_path / 'mlflow' / 'mlflow.db'}"
    (tmp_path / "mlflow").mkdir()
    monkeypatch.setenv("FLOORSIGHT_DB", str(history))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_uri)
    monkeypatch.setenv("FLOORSIGHT_HOME", str(tmp_path / "home"))
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
