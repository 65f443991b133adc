"""Snapshots of the online models, logged to MLflow with their online metrics.

The models' state lives in the dataflow (Bytewax snapshots it for recovery). Every
``every_windows`` closed windows of a machine the score step also emits a snapshot: the
pickled :class:`~floorsight.alerts.engine.MachineAlerting` and its online metrics (windows
scored, flag rates, alerts, thresholds, feedback taken). This sink logs them to one MLflow run
per worker (experiment ``floorsight-online``): metrics as ``<machine>.<metric>`` with the
machine's window count as the step, state as the artifact ``state/<machine>.pkl`` (the newest
replaces the previous one), so a data scientist can load exactly the model that ran.
"""

from __future__ import annotations

import pickle
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from bytewax.outputs import DynamicSink, StatelessSinkPartition

EXPERIMENT = "floorsight-online"


@dataclass(frozen=True)
class ModelSnapshot:
    machine_id: str
    at: datetime  # event time of the newest window scored
    windows: int
    metrics: dict[str, float]
    state: bytes  # pickled MachineAlerting


def artifact_location(tracking_uri: str) -> str | None:
    """Artifacts beside a SQLite store (MLflow's default would be ./mlruns of the cwd)."""
    if tracking_uri.startswith("sqlite:///"):
        return Path(tracking_uri.removeprefix("sqlite:///")).parent.joinpath("mlartifacts").as_uri()
    return None


class MlflowSnapshotSink(DynamicSink[ModelSnapshot]):
    def __init__(self, tracking_uri: str, run_name: str = "online-models") -> None:
        self.tracking_uri, self.run_name = tracking_uri, run_name

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _Partition:
        return _Partition(self.tracking_uri, f"{self.run_name}-w{worker_index}")


class _Partition(StatelessSinkPartition[ModelSnapshot]):
    def __init__(self, tracking_uri: str, run_name: str) -> None:
        from mlflow import MlflowClient

        self.client = MlflowClient(tracking_uri)
        exp = self.client.get_experiment_by_name(EXPERIMENT)
        exp_id = (
            exp.experiment_id
            if exp is not None
            else self.client.create_experiment(
                EXPERIMENT, artifact_location=artifact_location(tracking_uri)
            )
        )
        self.run_id = self.client.create_run(exp_id, run_name=run_name).info.run_id

    def write_batch(self, items: list[ModelSnapshot]) -> None:
        from mlflow.entities import Metric

        newest: dict[str, ModelSnapshot] = {}
        metrics = []
        for snap in items:
            ms = int(snap.at.timestamp() * 1000)
            metrics += [
                Metric(f"{snap.machine_id}.{k}", v, ms, snap.windows)
                for k, v in snap.metrics.items()
            ]
            newest[snap.machine_id] = snap
        self.client.log_batch(self.run_id, metrics=metrics)
        with tempfile.TemporaryDirectory() as tmp:
            for machine_id, snap in newest.items():
                path = Path(tmp) / f"{machine_id}.pkl"
                path.write_bytes(snap.state)
                self.client.log_artifact(self.run_id, str(path), artifact_path="state")

    def close(self) -> None:
        self.client.set_terminated(self.run_id)


def load_state(tracking_uri: str, run_id: str, machine_id: str):
    """The machine's models as the pipeline last logged them (a ``MachineAlerting``)."""
    from mlflow import MlflowClient

    with tempfile.TemporaryDirectory() as tmp:
        path = MlflowClient(tracking_uri).download_artifacts(run_id, f"state/{machine_id}.pkl", tmp)
        return pickle.loads(Path(path).read_bytes())
