"""A registry writer's code never runs in the champion loader.

Whoever can write the MLflow store can register a model version, tag it and move the
``champion`` alias. The pipeline's score step then loads that version. These tests register,
in a real MLflow store (SQLite in a tmp folder), versions whose loading would run code: a pickle
whose unpickling touches a marker file, a skops file holding a type outside the project's
trusted list (its ``__setstate__`` touches a marker) whose ``MLmodel`` asks MLflow to trust it,
a pickle saved under the skops name, a version without the tags the stream needs and one
without a model at all. Each is refused with a logged reason naming the version, no marker
appears, and the champion loaded before keeps scoring.
"""

from __future__ import annotations

import json
import logging
import pickle
from datetime import timedelta
from pathlib import Path

import mlflow
import numpy as np
import polars as pl
import pytest
import yaml
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

from floorsight.models.champion import (
    TRUSTED_TYPES,
    ChampionRefusedError,
    ChampionScorer,
    experiment,
    load_champion,
    log_model,
    promote,
    register_failure_model,
)
from floorsight.models.training import (
    ProductStandardizer,
    feature_columns,
    model_input,
    window_matrix,
)
from tests.conftest import T0

NAME = "failure-malicious"
HORIZON = timedelta(minutes=15)


class PickleTrap:
    """Unpickling it touches ``marker``: any code could run in its place."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


class SkopsTrap:
    """A custom type in a skops file: constructing it touches the marker in its state."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __setstate__(self, state: dict) -> None:
        Path(state["marker"]).touch()
        self.__dict__.update(state)

    def predict_proba(self, x):
        return np.tile([0.0, 1.0], (len(x), 1))


def features_frame(windows: int = 30, seed: int = 0) -> pl.DataFrame:
    """A small ``features`` table: two machines, two sensors, 10 s windows."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(windows):
        start = T0 + timedelta(seconds=10 * i)
        for machine in ("M01", "M02"):
            for sensor in ("temp", "vib"):
                rows.append(
                    {
                        "machine_id": machine,
                        "sensor": sensor,
                        "window_start": start,
                        "window_end": start + timedelta(seconds=10),
                        "work_order": "WO-1",
                        "product": "P-1",
                        "material_lot": "L-1",
                        "mean": float(rng.normal()),
                        "std": float(abs(rng.normal())),
                        "slope": float(rng.normal()),
                    }
                )
    return pl.DataFrame(rows)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A MLflow store: v1 a good champion, then one hostile or broken version per case."""
    root = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    markers = root / "markers"
    markers.mkdir()
    matrix = window_matrix(features_frame())
    columns = feature_columns(matrix)
    x = model_input(matrix, columns)
    y = (matrix["temp.mean"] > 0).cast(pl.Int8).to_numpy()
    experiment("malicious-test", uri)
    versions = {}

    def register(key: str, model_uri: str, tags: bool = True) -> None:
        if tags:
            versions[key] = register_failure_model(model_uri, NAME, columns, 0.5, HORIZON, uri)
        else:
            versions[key] = int(mlflow.register_model(model_uri, NAME).version)

    good = make_pipeline(ProductStandardizer(), LogisticRegression()).fit(x, y)
    with mlflow.start_run():
        register("good", log_model(good))

    # a pickle that runs code when loaded (the trap is live: unpickling it here touches)
    pickle_marker = markers / "pickle-ran"
    pickle.loads(pickle.dumps(PickleTrap(pickle_marker)))
    assert pickle_marker.exists()
    pickle_marker.unlink()
    with mlflow.start_run():
        info = mlflow.sklearn.log_model(
            PickleTrap(pickle_marker),
            name="model",
            serialization_format="pickle",
            pip_requirements=["scikit-learn"],
        )
    register("pickle", info.model_uri)

    # a skops file with a type outside TRUSTED_TYPES, and an MLmodel telling MLflow to trust
    # it (MLflow's own save loads it once to check: the trap is live)
    skops_marker = markers / "skops-ran"
    trap = f"{SkopsTrap.__module__}.{SkopsTrap.__qualname__}"
    with mlflow.start_run():
        info = mlflow.sklearn.log_model(
            SkopsTrap(str(skops_marker)),
            name="model",
            serialization_format="skops",
            skops_trusted_types=[*TRUSTED_TYPES, trap],
            pip_requirements=["scikit-learn"],
        )
    assert skops_marker.exists()
    skops_marker.unlink()
    register("skops", info.model_uri)

    # a pickle saved under the skops name, beside an MLmodel that says skops
    folder = root / "disguised"
    folder.mkdir()
    (folder / "model.skops").write_bytes(pickle.dumps(PickleTrap(pickle_marker)))
    flavor = {"pickled_model": "model.skops", "serialization_format": "skops"}
    (folder / "MLmodel").write_text(yaml.safe_dump({"flavors": {"sklearn": flavor}}))
    with mlflow.start_run() as run:
        mlflow.log_artifacts(str(folder), artifact_path="model")
    register("disguised", f"runs:/{run.info.run_id}/model")

    # a good model without the stream's tags, and a version with no model in it
    with mlflow.start_run():
        register("untagged", log_model(good), tags=False)
    with mlflow.start_run() as run:
        mlflow.log_text("not a model", "model/README.txt")
    client = mlflow.MlflowClient(uri, uri)
    empty = client.create_model_version(NAME, f"{run.info.artifact_uri}/model", run.info.run_id)
    for key, value in client.get_model_version(NAME, versions["good"]).tags.items():
        client.set_model_version_tag(NAME, empty.version, key, value)
    versions["empty"] = int(empty.version)

    return {"uri": uri, "markers": markers, "versions": versions, "trap": trap}


def ran(store) -> list[str]:
    """The markers that a model's code touched."""
    return sorted(p.name for p in store["markers"].iterdir())


def refusals(caplog) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "floorsight.champion" and "refused" in r.getMessage()
    ]


def scored_by(scores) -> set[tuple[str, str, int]]:
    """(model, registered name, version) of a frame of champion score rows."""
    return {
        (model, json.loads(e)["model"], json.loads(e)["version"])
        for model, e in scores.select("model", "evidence").iter_rows()
    }


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("pickle", "pickle"),
        ("skops", "untrusted types"),
        ("disguised", "not a skops file"),
        ("untagged", "lacks the tags"),
        ("empty", "no MLmodel"),
    ],
)
def test_a_hostile_champion_is_refused_and_the_previous_one_keeps_scoring(
    store, caplog, case: str, reason: str
) -> None:
    uri, versions = store["uri"], store["versions"]
    features = features_frame(windows=6, seed=1)
    promote(NAME, versions["good"], uri)
    scorer = ChampionScorer(NAME, uri, poll=timedelta(0))  # looks at the alias every batch
    before = scorer.score(features)
    good = {("champion", NAME, versions["good"])}
    assert scored_by(before) == good

    promote(NAME, versions[case], uri)
    with caplog.at_level(logging.INFO, logger="floorsight.champion"):
        after = scorer.score(features)
        again = scorer.score(features)  # the next poll does not retry or log it again

    assert ran(store) == [], "the model's code ran"
    (message,) = refusals(caplog)
    assert f"{NAME} v{versions[case]}" in message
    assert reason in message
    assert f"v{versions['good']}" in message  # says which champion goes on scoring
    if case == "skops":
        assert store["trap"] in message  # names the untrusted type
    # the good champion goes on scoring, with the same scores
    for frame in (after, again):
        assert scored_by(frame) == good
        assert frame["score"].to_list() == before["score"].to_list()


def test_without_a_previous_champion_nothing_is_scored_and_nothing_runs(store, caplog) -> None:
    uri, versions = store["uri"], store["versions"]
    promote(NAME, versions["pickle"], uri)
    scorer = ChampionScorer(NAME, uri, poll=timedelta(0))
    with caplog.at_level(logging.INFO, logger="floorsight.champion"):
        assert scorer.score(features_frame(windows=3)) is None
    assert ran(store) == []
    (message,) = refusals(caplog)
    assert "no champion" in message

    # the alias moves back to a good version: the scorer picks it up
    promote(NAME, versions["good"], uri)
    assert scored_by(scorer.score(features_frame(windows=3))) == {
        ("champion", NAME, versions["good"])
    }


def test_load_champion_raises_the_refusal_with_the_untrusted_types(store) -> None:
    uri, versions = store["uri"], store["versions"]
    promote(NAME, versions["skops"], uri)
    with pytest.raises(ChampionRefusedError) as refused:
        load_champion(NAME, uri)
    assert refused.value.version == versions["skops"]
    assert refused.value.untrusted == (store["trap"],)
    assert ran(store) == []


def test_a_good_champion_loads_without_pickle_or_mlflow_loaders(store, monkeypatch) -> None:
    """The loader reads the skops file itself: no pickle, cloudpickle or MLflow model loader."""
    import cloudpickle
    import mlflow.pyfunc

    def forbidden(*args, **kwargs):
        raise AssertionError("the loader must not deserialize with pickle or MLflow")

    for module, attr in (
        (pickle, "load"),
        (pickle, "loads"),
        (cloudpickle, "load"),
        (cloudpickle, "loads"),
        (mlflow.sklearn, "load_model"),
        (mlflow.pyfunc, "load_model"),
    ):
        monkeypatch.setattr(module, attr, forbidden)
    uri, versions = store["uri"], store["versions"]
    promote(NAME, versions["good"], uri)
    champion = load_champion(NAME, uri)
    assert champion.version == versions["good"]
    assert (
        json.loads(champion.score(features_frame(windows=2))["evidence"][0])["version"]
        == (versions["good"])
    )
