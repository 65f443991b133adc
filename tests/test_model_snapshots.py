"""The online models' state and metrics reach a real MLflow store while the dataflow runs."""

from __future__ import annotations

from datetime import timedelta

import pytest
from bytewax.testing import TestingSource, run_main

from floorsight.alerts.engine import MachineAlerting
from floorsight.pipelines.context import ContextStore
from floorsight.pipelines.flow import PipelineSettings, build_flow
from floorsight.pipelines.model_snapshots import EXPERIMENT, load_state
from floorsight.pipelines.validate import ReadingRules
from floorsight.simulators import build_plant
from floorsight.storage import Database
from tests.conftest import T0

pytestmark = pytest.mark.e2e


def test_model_state_and_online_metrics_are_logged_to_mlflow(tmp_path) -> None:
    from mlflow import MlflowClient

    plant = build_plant(2, start=T0, horizon=timedelta(minutes=20), seed=3, faults=())
    plant.write_context(tmp_path / "erp")
    batches = [
        plant.readings(T0 + timedelta(minutes=i), T0 + timedelta(minutes=i + 1)) for i in range(20)
    ]
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    settings = PipelineSettings(
        rules=ReadingRules(max_future=timedelta(days=36500)),
        mlflow_uri=uri,
        snapshot_windows=30,
    )
    db = tmp_path / "f.duckdb"
    run_main(build_flow(TestingSource(batches), ContextStore(tmp_path / "erp"), db, settings))

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(EXPERIMENT)
    (run,) = client.search_runs([exp.experiment_id])
    assert run.info.status == "FINISHED"
    history = client.get_metric_history(run.info.run_id, "M01.anomaly.windows")
    # one point per snapshot (every 30 windows of 20 minutes of 10 s windows), growing
    assert len(history) >= 3
    values = [m.value for m in sorted(history, key=lambda m: m.step)]
    assert values == sorted(values) and values[0] >= 30
    assert "M01.anomaly.threshold" in run.data.metrics
    # the logged state is the machine's model bundle and can go on scoring
    state = load_state(uri, run.info.run_id, "M01")
    assert isinstance(state, MachineAlerting)
    assert state.windows >= 30 and state.counts["anomaly.windows"] >= 30
    features = Database(db).query(
        "SELECT * FROM features WHERE machine_id = 'M01' ORDER BY window_start DESC LIMIT 24"
    )
    scores, _ = state.update(features.sort("window_start"))
    assert set(scores["model"]) >= {"zscore", "sensor_health", "drift"}
