"""The online models' state and metrics reach a real MLflow store while the dataflow runs.

The state is a pickle, so it is signed (HMAC-SHA256 with a key from a private file in the
floorsight home) and :func:`load_state` unpickles only what that key signed: a state artifact
that someone with write access to the MLflow store replaced never runs.
"""

from __future__ import annotations

import pickle
import stat
from datetime import timedelta
from pathlib import Path

import pytest
from bytewax.testing import TestingSource, run_main

from floorsight.alerts.engine import MachineAlerting
from floorsight.config import SecretError
from floorsight.pipelines.context import ContextStore
from floorsight.pipelines.flow import PipelineSettings, build_flow
from floorsight.pipelines.model_snapshots import (
    EXPERIMENT,
    STATE_KEY_ENV,
    MlflowSnapshotSink,
    ModelSnapshot,
    StateTrustError,
    load_state,
    state_key,
    state_key_file,
)
from floorsight.pipelines.validate import ReadingRules
from floorsight.simulators import build_plant
from floorsight.storage import Database
from tests.conftest import T0


class PickleTrap:
    """Unpickling it touches ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("FLOORSIGHT_HOME", str(tmp_path / "home"))
    monkeypatch.delenv(STATE_KEY_ENV, raising=False)
    return tmp_path / "home"


def log_one_state(uri: str, state: object) -> str:
    """Log one machine's state with the pipeline's sink; returns the run id."""
    partition = MlflowSnapshotSink(uri).build("snapshots", 0, 1)
    partition.write_batch(
        [ModelSnapshot("M01", T0, 30, {"anomaly.windows": 30.0}, pickle.dumps(state))]
    )
    partition.close()
    return partition.run_id


def state_file(uri: str, run_id: str) -> Path:
    from mlflow import MlflowClient
    from mlflow.utils.file_utils import local_file_uri_to_path

    root = local_file_uri_to_path(MlflowClient(uri).get_run(run_id).info.artifact_uri)
    (path,) = Path(root, "state").iterdir()
    return path


def test_the_state_key_is_made_private_on_first_use(home, tmp_path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run_id = log_one_state(uri, {"windows": 30})
    key = state_key_file()
    assert key.parent.parent == home
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert stat.S_IMODE(key.parent.stat().st_mode) == 0o700
    assert len(key.read_text().strip()) == 64
    assert load_state(uri, run_id, "M01") == {"windows": 30}
    # a key others can read is no longer a secret: refused, nothing is loaded
    key.chmod(0o644)
    with pytest.raises(SecretError):
        load_state(uri, run_id, "M01")


def test_workers_making_the_key_at_once_all_get_the_same_whole_key(home) -> None:
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(8) as pool:
        keys = set(pool.map(lambda _: state_key(), range(32)))
    (key,) = keys
    assert len(key) == 64
    assert [p.name for p in state_key_file().parent.iterdir()] == ["model-state.key"]


@pytest.mark.parametrize("tampering", ["replaced", "unsigned", "other key", "other machine"])
def test_a_state_artifact_not_signed_by_this_home_is_never_unpickled(
    home, tmp_path, monkeypatch, tampering: str
) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    marker = tmp_path / "ran"
    state = {"windows": 30}
    run_id = log_one_state(uri, state)
    path = state_file(uri, run_id)
    trap = pickle.dumps(PickleTrap(marker))
    if tampering == "replaced":  # the signature kept, the pickle swapped
        signed = path.read_bytes()
        path.write_bytes(signed[: -len(pickle.dumps(state))] + trap)
    elif tampering == "unsigned":  # a plain pickle, as a registry writer would upload it
        path.write_bytes(trap)
    elif tampering == "other key":  # signed by a floorsight home with another key
        monkeypatch.setenv(STATE_KEY_ENV, "a key that is not this home's")
        run_id = log_one_state(uri, PickleTrap(marker))
        monkeypatch.delenv(STATE_KEY_ENV)
    else:  # M01's genuine state filed as M02's
        path.rename(path.with_name(path.name.replace("M01", "M02")))
    machine = "M02" if tampering == "other machine" else "M01"

    with pytest.raises(StateTrustError, match="not signed"):
        load_state(uri, run_id, machine)
    assert not marker.exists()


@pytest.mark.e2e
def test_model_state_and_online_metrics_are_logged_to_mlflow(home, tmp_path) -> None:
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
    assert set(scores["model"]) >= {"anomaly", "sensor", "drift"}
