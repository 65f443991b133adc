"""Snapshots of the online models, logged to MLflow with their online metrics.

The models' state lives in the dataflow (Bytewax snapshots it for recovery). Every
``every_windows`` closed windows of a machine the score step also emits a snapshot: the
pickled :class:`~floorsight.alerts.engine.MachineAlerting` and its online metrics (windows
scored, flag rates, alerts, thresholds, feedback taken). This sink logs them to one MLflow run
per worker (experiment ``floorsight-online``): metrics as ``<machine>.<metric>`` with the
machine's window count as the step, state as the artifact ``state/<machine>.state`` (the newest
replaces the previous one), so a data scientist can load exactly the model that ran
(:func:`load_state`).

The state is a pickle, and unpickling runs whatever code the bytes name, while anyone who can
write the MLflow store can replace an artifact. So the artifact is signed: a header line
``floorsight-state-v1``, the hex HMAC-SHA256 of the machine id and the pickle under the state
key, a newline, then the pickle. The key is ``FLOORSIGHT_STATE_KEY`` or the file
``keys/model-state.key`` in the floorsight home (created on first use, mode 0600 in a 0700
folder, refused if others can read it). :func:`load_state` unpickles only bytes whose signature
matches; anything else raises :class:`StateTrustError` before a byte is unpickled.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import pickle
import secrets
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from bytewax.outputs import DynamicSink, StatelessSinkPartition

from floorsight import config

EXPERIMENT = "floorsight-online"
#: environment variable holding the key that signs model state (else the key file)
STATE_KEY_ENV = "FLOORSIGHT_STATE_KEY"
_HEADER = b"floorsight-state-v1\n"
_DIGEST_HEX = 64  # hex characters of an HMAC-SHA256


class StateTrustError(ValueError):
    """A state artifact this floorsight home did not sign: it is never unpickled."""


def state_key_file() -> Path:
    """Where the state key lives when ``FLOORSIGHT_STATE_KEY`` is not set."""
    return config.home() / "keys" / "model-state.key"


def state_key() -> bytes:
    """The key that signs model state, created (0600, in a 0700 folder) on first use."""
    path = state_key_file()
    key = config.secret(STATE_KEY_ENV, path if path.exists() else None)
    if key is None:
        config.private_dir(path.parent)
        # written whole under another name (mkstemp: mode 0600), then linked into place, which
        # fails if another worker got there first: nobody ever reads a half-written key
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".model-state.key.")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(secrets.token_hex(32) + "\n")
            os.link(tmp, path)
        except FileExistsError:
            pass
        finally:
            os.unlink(tmp)
        key = config.secret(STATE_KEY_ENV, path, required=True)
    if not key:
        raise config.SecretError(f"the state key in {path} is empty")
    return key.encode()


def _digest(key: bytes, machine_id: str, state: bytes) -> bytes:
    # the machine id is signed too: one machine's state never loads as another's
    message = machine_id.encode("utf-8", "surrogatepass") + b"\0" + state
    return hmac.new(key, message, hashlib.sha256).hexdigest().encode()


def sign_state(machine_id: str, state: bytes, key: bytes | None = None) -> bytes:
    """The artifact for a machine's pickled state: header, signature, pickle."""
    return _HEADER + _digest(key or state_key(), machine_id, state) + b"\n" + state


def verify_state(machine_id: str, artifact: bytes, key: bytes | None = None) -> bytes:
    """The pickle inside a state artifact, if this home's key signed it for ``machine_id``."""
    start = len(_HEADER) + _DIGEST_HEX + 1
    signature, state = artifact[len(_HEADER) : start - 1], artifact[start:]
    if (
        not artifact.startswith(_HEADER)
        or artifact[start - 1 : start] != b"\n"
        or not hmac.compare_digest(signature, _digest(key or state_key(), machine_id, state))
    ):
        raise StateTrustError(
            f"the state of {machine_id} is not signed by this floorsight home's state key "
            f"({STATE_KEY_ENV} or {state_key_file()}): it is not unpickled"
        )
    return state


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
        key = state_key()
        with tempfile.TemporaryDirectory() as tmp:
            for machine_id, snap in newest.items():
                path = Path(tmp) / f"{machine_id}.state"
                path.write_bytes(sign_state(machine_id, snap.state, key))
                self.client.log_artifact(self.run_id, str(path), artifact_path="state")

    def close(self) -> None:
        self.client.set_terminated(self.run_id)


def load_state(tracking_uri: str, run_id: str, machine_id: str):
    """The machine's models as the pipeline last logged them (a ``MachineAlerting``).

    Raises :class:`StateTrustError` (and unpickles nothing) unless the artifact carries this
    floorsight home's signature for ``machine_id``.
    """
    from mlflow import MlflowClient

    key = state_key()
    with tempfile.TemporaryDirectory() as tmp:
        name = f"state/{machine_id}.state"
        path = MlflowClient(tracking_uri).download_artifacts(run_id, name, tmp)
        state = verify_state(machine_id, Path(path).read_bytes(), key)
    return pickle.loads(state)  # signed by this home's key: written by floorsight itself
