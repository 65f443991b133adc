"""The MLflow champion scored in the stream, raising alerts, and swapped for a new version
without a restart.

Two versions of a real scikit-learn failure classifier (trained on the simulator's window
features and failure log) are registered in a real MLflow store (SQLite in a tmp folder). The
flow runs with a fed source; after the first part of the history is scored by v1, the test
moves the ``champion`` alias to v2 and feeds the rest: the champion's score rows (model
``champion``, the version in their evidence) switch to v2 while the online models keep scoring
beside it. ``floorsight models`` lists both versions and compares them and the online models on
the scores written. With one version all along, the champion's flags before the bearing failure
raise a ``champion`` alert that clears once the repaired machine runs normally again; the
``champion`` model hands each window's row to its alert rule once, however the engine splits a
batch.
"""

from __future__ import annotations

import itertools
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
from floorsight.models.base import Context, Maintenance
from floorsight.models.champion import (
    MODEL_NAME,
    ChampionScorer,
    experiment,
    load_champion,
    log_model,
    promote,
    register_failure_model,
)
from floorsight.models.champion_scores import ChampionModel
from floorsight.models.engine import MachineModels
from floorsight.models.machine import segments_of
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
#: the champion's score rows per registered version, from their evidence (DuckDB)
PER_VERSION = (
    "SELECT json_extract(evidence, '$.version')::INTEGER AS version, count(*) AS n, "
    "min(window_start) AS first, max(window_start) AS last "
    "FROM scores WHERE model = 'champion' GROUP BY version ORDER BY version"
)
HORIZON = timedelta(minutes=15)
WINDOW = timedelta(seconds=10)
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
    assert set(scores["model"]) == {MODEL_NAME} == {"champion"}
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


def champion_flow(plant, registry, tmp_path):
    """A flow over the plant's context scoring with the champion (the alias looked up every
    batch), its database, and its fed source."""
    plant.write_context(tmp_path / "erp")
    db = Database(tmp_path / "f.duckdb")
    fed = FedInput()
    flow = build_flow(
        fed.source(),
        ContextStore(tmp_path / "erp"),
        db.path,
        PipelineSettings(flush_interval=timedelta(milliseconds=200)),
        champion=ChampionScorer(NAME, registry, poll=timedelta(0)),
    )
    return flow, db, fed


def feed_minutes(fed: FedInput, plant, first: int, last: int) -> None:
    for m in range(first, last, 5):
        fed.feed(plant.readings(T0 + timedelta(minutes=m), T0 + timedelta(minutes=m + 5)))


def test_a_new_champion_is_picked_up_while_the_pipeline_runs(plant, registry, tmp_path) -> None:
    promote(NAME, 1, registry)
    flow, db, fed = champion_flow(plant, registry, tmp_path)
    half = T0 + timedelta(minutes=30)

    def script() -> None:
        feed_minutes(fed, plant, 0, 30)
        wait_for(
            db,
            "SELECT 1 FROM scores WHERE model = 'champion' "
            "AND json_extract(evidence, '$.version')::INTEGER = 1 AND window_end >= ?",
            [half - timedelta(minutes=1)],
        )
        promote(NAME, 2, registry)  # the pipeline is not restarted
        feed_minutes(fed, plant, 30, 60)

    fed.run(flow, script)

    models = set(db.query("SELECT DISTINCT model FROM scores")["model"])
    assert {"champion", "anomaly"} <= models
    assert not any(m.startswith("champion:") for m in models)  # one name, whatever the version
    versions = {r["version"]: r for r in db.query(PER_VERSION).iter_rows(named=True)}
    assert set(versions) == {1, 2}
    v1, v2 = versions[1], versions[2]
    # v1 scored the first half, v2 everything after the promotion: one switch, no overlap
    assert v1["first"] == T0
    assert v1["last"] < v2["first"]
    assert v1["last"] >= half - timedelta(minutes=1)
    assert v2["last"] >= T0 + timedelta(minutes=59)
    # every closed window got exactly one champion score (from one version or the other)
    windows = db.query("SELECT DISTINCT machine_id, window_start, work_order FROM features")
    champion_rows = db.query(
        "SELECT machine_id, window_start, work_order FROM scores WHERE model = 'champion'"
    )
    assert champion_rows.height == windows.height
    assert champion_rows.sort(champion_rows.columns).equals(windows.sort(windows.columns))
    # each version's alarms follow its own threshold, which its evidence names
    thresholds = db.query(
        "SELECT json_extract(evidence, '$.version')::INTEGER AS version, "
        "bool_and(is_anomaly = (score >= CASE WHEN version = 1 THEN 0.5 ELSE 0.2 END) "
        "AND json_extract(evidence, '$.threshold')::DOUBLE = CASE WHEN version = 1 "
        "THEN 0.5 ELSE 0.2 END) AS ok FROM scores WHERE model = 'champion' "
        "GROUP BY version ORDER BY version"
    )
    assert thresholds.rows() == [(1, True), (2, True)]

    # floorsight models: the registry, and both versions vs the online models on these scores
    runner = CliRunner()
    listed = runner.invoke(app, ["models", "list", "--mlflow-uri", registry])
    assert listed.exit_code == 0, listed.output
    assert NAME in listed.output and "champion" in listed.output
    compared = runner.invoke(
        app, ["models", "compare", "--db", str(db.path), "--horizon-h", "0.25", "--json"]
    )
    assert compared.exit_code == 0, compared.output
    rows = {
        (r["model"], r["version"]): r for r in map(json.loads, compared.output.strip().splitlines())
    }
    assert {("champion", f"{NAME}@v1"), ("champion", f"{NAME}@v2"), ("anomaly", None)} <= set(rows)
    # one failure (M01 at 40 min), scored by v2 (promoted at 30 min)
    second = rows["champion", f"{NAME}@v2"]
    assert second["failures"] == 1 and second["positives"] > 0


def test_the_champion_raises_an_alert_before_the_failure_that_clears_after_it(
    plant, registry, tmp_path
) -> None:
    promote(NAME, 2, registry)  # threshold 0.2, one version all along
    flow, db, fed = champion_flow(plant, registry, tmp_path)
    fed.run(flow, lambda: feed_minutes(fed, plant, 0, 60))

    flags = db.query(
        "SELECT window_start, is_anomaly FROM scores WHERE model = 'champion' "
        "AND machine_id = 'M01' ORDER BY window_start"
    )
    alerts = db.query(
        "SELECT * FROM alerts WHERE cause = 'champion' AND machine_id = 'M01' ORDER BY first_seen"
    )
    assert alerts.height >= 1, flags
    alert = alerts.row(0, named=True)
    # the champion's probabilities reached its threshold for consecutive windows first here
    flagged = flags["is_anomaly"].to_list()
    first = next(i for i in range(len(flagged) - 1) if flagged[i] and flagged[i + 1])
    assert alert["first_seen"] == flags["window_start"][first]
    # ... before the bearing failed at 40 minutes
    assert alert["raised_at"] <= FAULT.start + FAULT.duration
    # the reason and the evidence name the registered model and its version
    assert "failure predicted by the MLflow champion" in alert["reason"]
    assert NAME in alert["reason"] and '"version": 2' in alert["reason"]
    assert json.loads(alert["evidence"]) == {
        "model": NAME,
        "version": 2,
        "threshold": 0.2,
        "horizon_h": 0.25,
    }
    # repaired and running normally again, the machine's alert clears
    assert alert["cleared_at"] is not None
    assert alert["cleared_at"] > FAULT.start + FAULT.duration
    assert alerts.filter(alerts["cleared_at"].is_null()).height == 0


def test_the_champion_model_returns_each_row_once_however_the_batch_is_split(plant) -> None:
    readings = plant.readings(T0 + timedelta(minutes=20), T0 + timedelta(minutes=22))
    segments = segments_of(window_features(ErpContextJoin(plant).join(readings), WINDOW))
    m01 = [seg for seg in segments if seg.key[0] == "M01"]
    rows = [
        seg.score_row("champion", i / len(m01), i % 3 == 0, f'{{"version": {i}}}')
        for i, seg in enumerate(m01)
    ]
    # a row of a window outside this batch (say, an earlier one) is not this batch's
    stale = {**rows[0], "window_start": T0, "window_end": T0 + timedelta(seconds=10)}
    context = Context("M01", champion=[stale, *rows])

    model = ChampionModel()
    # cut between windows, as the engine does (a window's segments stay in one call)
    starts = sorted({seg.start for seg in m01})
    cuts = [starts[0], starts[1], starts[5], starts[len(starts) // 2], starts[-1] + WINDOW]
    chunks = [[seg for seg in m01 if a <= seg.start < b] for a, b in itertools.pairwise(cuts)]
    assert sum(map(len, chunks)) == len(m01)
    returned = [r for chunk in chunks for r in model.score_segments(chunk, context).scores]
    assert returned == rows
    assert model.score_segments([], context).scores == []
    assert model.score_segments(m01, Context("M01")).scores == []

    # the engine splits a batch at a maintenance event that ended inside it: still each once
    mid = m01[len(m01) // 2].start
    engine = MachineModels()
    out = engine.update(m01, Context("M01", champion=rows), [Maintenance("repair", mid, mid)])
    assert engine.maintenance_events == 1
    assert out["champion"].scores == rows
