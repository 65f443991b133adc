"""The MLflow champion scored in the stream, and swapped for a new version without a restart.

Two versions of a real scikit-learn failure classifier (trained on the simulator's window
features and failure log) are registered in a real MLflow store (SQLite in a tmp folder). The
flow runs with a fed source; after the first part of the history is scored by v1, the test
moves the ``champion`` alias to v2 and feeds the rest: the score table switches to v2 while the
online models keep scoring beside it. ``floorsight models`` lists both versions and compares
the models on the scores written.
"""

from __future__ import annotations

import json
from datetime import timedelta

import mlflow
import polars as pl
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from typer.testing import CliRunner

from floorsight.cli import app
from floorsight.features import window_features
from floorsight.models.champion import (
    ChampionScorer,
    experiment,
    load_champion,
    log_model,
    promote,
    register_failure_model,
)
from floorsight.models.training import (
    ProductStandardizer,
    failure_labels,
    feature_columns,
    model_input,
    window_matrix,
)
from floorsight.pipelines.context import SPEC_SCHEMA, ContextStore, ErpContext
from floorsight.pipelines.flow import PipelineSettings, build_flow
from floorsight.records import FaultKind
from floorsight.simulators import Fault, build_plant
from floorsight.simulators.erp import maintenance_log
from floorsight.storage import Database
from tests.conftest import T0
from tests.streaming import FedInput, wait_for

NAME = "failure-test"
HORIZON = timedelta(minutes=15)
#: a bearing that fails 40 minutes in (then M01 is down for 10 minutes)
FAULT = Fault(
    "F-1",
    "M01",
    FaultKind.BEARING_WEAR,
    T0 + timedelta(minutes=10),
    timedelta(minutes=30),
    downtime=timedelta(minutes=10),
)


class ErpContextJoin:
    """The plant's work orders as an ERP context (spec limits are not needed here)."""

    def __init__(self, plant) -> None:
        self.context = ErpContext(plant.work_orders_frame(), pl.DataFrame(schema=SPEC_SCHEMA))

    def join(self, readings: pl.DataFrame) -> pl.DataFrame:
        return self.context.join(readings)


@pytest.fixture(scope="module")
def plant():
    return build_plant(
        2, start=T0, horizon=timedelta(hours=1), seed=3, sample_hz=1, faults=(FAULT,)
    )


@pytest.fixture(scope="module")
def registry(plant, tmp_path_factory) -> str:
    """A MLflow store with two registered versions of a failure classifier; v1 is champion."""
    uri = f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"
    joined = ErpContextJoin(plant).join(plant.readings(T0, T0 + timedelta(hours=1)))
    matrix = window_matrix(window_features(joined, timedelta(seconds=10)))
    labelled = failure_labels(matrix, maintenance_log(plant), HORIZON)
    columns = feature_columns(matrix)
    x, y = model_input(labelled, columns), labelled["failure_within"].to_numpy()
    assert 0 < y.sum() < len(y)
    experiment("champion-test", uri)
    for c, threshold in ((1.0, 0.5), (0.01, 0.2)):
        model = make_pipeline(ProductStandardizer(), LogisticRegression(C=c, max_iter=1000))
        model.fit(x, y)
        with mlflow.start_run():
            mlflow.log_params({"C": c, "decision_threshold": threshold})
            uri_of_model = log_model(model, input_example=x.head(2))
        register_failure_model(uri_of_model, NAME, columns, threshold, HORIZON, uri)
    promote(NAME, 1, uri)
    return uri


def test_the_champion_is_loaded_with_its_threshold_and_scores_windows(plant, registry) -> None:
    champion = load_champion(NAME, registry)
    assert (champion.version, champion.threshold, champion.horizon_h) == (1, 0.5, 0.25)
    assert load_champion("no-such-model", registry) is None

    readings = plant.readings(T0 + timedelta(minutes=30), T0 + timedelta(minutes=31))
    joined = ErpContextJoin(plant).join(readings)
    scores = champion.score(window_features(joined, timedelta(seconds=10)))
    assert set(scores["model"]) == {f"champion:{NAME}@v1"}
    assert scores["score"].is_between(0, 1).all()
    assert (scores["is_anomaly"] == (scores["score"] >= 0.5)).all()
    assert json.loads(scores["evidence"][0]) == {
        "model": NAME,
        "version": 1,
        "threshold": 0.5,
        "horizon_h": 0.25,
    }
    # the failing machine scores higher than the healthy one shortly before the failure
    by_machine = dict(scores.group_by("machine_id").agg(pl.col("score").mean()).iter_rows())
    assert by_machine["M01"] > by_machine["M02"]


def test_a_new_champion_is_picked_up_while_the_pipeline_runs(plant, registry, tmp_path) -> None:
    plant.write_context(tmp_path / "erp")
    db = Database(tmp_path / "f.duckdb")
    fed = FedInput()
    scorer = ChampionScorer(NAME, registry, poll=timedelta(0))  # look at the alias every batch
    flow = build_flow(
        fed.source(),
        ContextStore(tmp_path / "erp"),
        db.path,
        PipelineSettings(flush_interval=timedelta(milliseconds=200)),
        champion=scorer,
    )
    half = T0 + timedelta(minutes=30)
    v1, v2 = f"champion:{NAME}@v1", f"champion:{NAME}@v2"

    def script() -> None:
        for m in range(0, 30, 5):
            fed.feed(plant.readings(T0 + timedelta(minutes=m), T0 + timedelta(minutes=m + 5)))
        wait_for(
            db,
            "SELECT 1 FROM scores WHERE model = ? AND window_end >= ?",
            [v1, half - timedelta(minutes=1)],
        )
        promote(NAME, 2, registry)  # the pipeline is not restarted
        for m in range(30, 60, 5):
            fed.feed(plant.readings(T0 + timedelta(minutes=m), T0 + timedelta(minutes=m + 5)))

    fed.run(flow, script)

    per_model = db.query(
        "SELECT model, count(*) AS n, min(window_start) AS first, max(window_start) AS last "
        "FROM scores GROUP BY model ORDER BY model"
    )
    models = dict(zip(per_model["model"], per_model.iter_rows(named=True), strict=True))
    assert {v1, v2, "zscore", "failure_risk"} <= set(models)
    # v1 scored the first half, v2 everything after the promotion: one switch, no overlap
    assert models[v1]["first"] == T0
    assert models[v1]["last"] < models[v2]["first"]
    assert models[v1]["last"] >= half - timedelta(minutes=1)
    assert models[v2]["last"] >= T0 + timedelta(minutes=59)
    # every closed window got exactly one champion score (from one version or the other)
    windows = db.query("SELECT DISTINCT machine_id, window_start, work_order FROM features")
    champion_rows = db.query(
        "SELECT machine_id, window_start, work_order FROM scores WHERE model LIKE 'champion:%'"
    )
    assert champion_rows.height == windows.height
    assert champion_rows.sort(champion_rows.columns).equals(windows.sort(windows.columns))
    # each version's alarms follow its own threshold
    thresholds = db.query(
        "SELECT model, bool_and(is_anomaly = (score >= CASE WHEN model = ? THEN 0.5 ELSE 0.2 "
        "END)) AS ok FROM scores WHERE model LIKE 'champion:%' GROUP BY model",
        [v1],
    )
    assert thresholds["ok"].to_list() == [True, True]

    # floorsight models: the registry, and champion vs online models on these scores
    runner = CliRunner()
    listed = runner.invoke(app, ["models", "list", "--mlflow-uri", registry])
    assert listed.exit_code == 0, listed.output
    assert NAME in listed.output and "champion" in listed.output
    compared = runner.invoke(
        app, ["models", "compare", "--db", str(db.path), "--horizon-h", "0.25", "--json"]
    )
    assert compared.exit_code == 0, compared.output
    rows = {r["model"]: r for r in map(json.loads, compared.output.strip().splitlines())}
    assert {v1, v2, "zscore", "failure_risk"} <= set(rows)
    # one failure (M01 at 40 min), scored by v2 (promoted at 30 min)
    assert rows[v2]["failures"] == 1 and rows[v2]["positives"] > 0
