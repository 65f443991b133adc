"""Distribution drift of a product's features (models/feature_drift.py): quiet on in-control
windows, found on the feature and product that moved, blind to changeovers, replayable, bounded,
and what the drift page shows is what the ``drift`` table holds."""

from __future__ import annotations

import pickle
import random
from datetime import UTC, datetime, timedelta

import polars as pl
import pytest

from floorsight.dashboards import queries
from floorsight.models.base import Context
from floorsight.models.feature_drift import DRIFT, FeatureDriftModel
from floorsight.models.machine import Coverage, Segment, segments_of
from floorsight.storage import Database

T0 = datetime(2026, 3, 2, 6, tzinfo=UTC)
LEVELS = {"A": {"temp": 60.0, "pressure": 900.0}, "B": {"temp": 45.0, "pressure": 780.0}}
SMALL = {"reference_windows": 300, "window": 150, "every": 30, "block": 10}


def window(i: int, product: str, rng: random.Random, shift: dict | None = None) -> Segment:
    start = T0 + timedelta(seconds=10 * i)
    key = ("M1", start, start + timedelta(seconds=10), f"WO-{product}", product, "L1")
    rows = {}
    for sensor, level in LEVELS[product].items():
        mean = level + rng.gauss(0, 1) + (shift or {}).get(sensor, 0.0)
        rows[sensor] = {"n": 10, "mean": mean, "std": 1.0, "min": 0, "max": 0, "last": mean}
    return Segment(key, rows, full=rows)


def alternating(n_runs: int, run: int, seed: int = 3, first: int = 0) -> list[Segment]:
    """Products A and B alternate in runs of ``run`` windows (a changeover at each)."""
    rng = random.Random(seed)
    return [
        window(first + r * run + k, "A" if r % 2 == 0 else "B", rng)
        for r in range(n_runs)
        for k in range(run)
    ]


def drift_rows(out) -> pl.DataFrame:
    return pl.DataFrame(out.tables.get("drift", []), schema=DRIFT.polars_schema)


def test_in_control_windows_and_changeovers_are_not_drift() -> None:
    # six changeovers between products 15 units apart in temp and 120 in pressure
    model = FeatureDriftModel(**SMALL)
    out = model.score_segments(alternating(8, 200), Context("M1"))
    rows = drift_rows(out)
    assert rows.filter(pl.col("detector") == "psi").height > 0  # it did judge them
    assert not rows["drifted"].any()
    assert not any(r["is_anomaly"] for r in out.scores)


def test_a_shifted_feature_is_drift_for_that_feature_and_product_only() -> None:
    model = FeatureDriftModel(**SMALL)
    model.score_segments(alternating(8, 200), Context("M1"))
    rng = random.Random(9)
    start = 1600
    shifted = [window(start + k, "A", rng, {"temp": 6.0}) for k in range(200)]
    back_to_b = [window(start + 200 + k, "B", rng) for k in range(200)]
    out = model.score_segments(shifted + back_to_b, Context("M1"))
    drifted = drift_rows(out).filter(pl.col("drifted"))
    assert set(drifted["product"]) == {"A"}
    assert set(drifted["feature"]) == {"temp.mean", "multivariate"}
    assert {"adwin", "psi", "multivariate"} <= set(drifted["detector"])
    flags = [r["is_anomaly"] for r in out.scores]
    assert any(flags[:200]) and not any(flags[200:])


def test_kswin_is_selectable() -> None:
    model = FeatureDriftModel(detector="kswin", kswin_window=20, kswin_stat=10, **SMALL)
    model.score_segments(alternating(4, 200), Context("M1"))
    rng = random.Random(2)
    out = model.score_segments(
        [window(800 + k, "A", rng, {"pressure": 6.0}) for k in range(300)], Context("M1")
    )
    fired = drift_rows(out).filter(pl.col("detector") == "kswin")
    assert fired["feature"].unique().to_list() == ["pressure.mean"]
    with pytest.raises(ValueError, match="adwin"):
        FeatureDriftModel(detector="page_hinkley").score_segments(alternating(1, 5), Context())


def test_replay_is_deterministic_and_batches_do_not_matter() -> None:
    segments = alternating(6, 150) + [
        window(900 + k, "A", random.Random(4), {"temp": 3.0}) for k in range(200)
    ]
    whole = FeatureDriftModel(**SMALL).score_segments(segments, Context("M1"))
    again = FeatureDriftModel(**SMALL).score_segments(segments, Context("M1"))
    split = FeatureDriftModel(**SMALL)
    parts = [split.score_segments(segments[i : i + 37], Context("M1")) for i in range(0, 1100, 37)]
    assert whole.scores == again.scores and whole.tables == again.tables
    assert [r for p in parts for r in p.scores] == whole.scores
    assert [r for p in parts for r in p.tables.get("drift", [])] == whole.tables["drift"]
    # a pickle round trip mid-stream continues identically
    first = FeatureDriftModel(**SMALL)
    first.score_segments(segments[:500], Context("M1"))
    resumed = pickle.loads(pickle.dumps(first)).score_segments(segments[500:], Context("M1"))
    assert resumed.scores == whole.scores[500:]


def test_state_is_bounded() -> None:
    model = FeatureDriftModel(**SMALL)
    model.score_segments(alternating(20, 300), Context("M1"))
    for product in model._products.values():
        for f in product.features.values():
            assert f.reference is None  # the reference is a sketch now
            assert len(f.edges) == SMALL["reference_windows"] // 30 - 1 or len(f.edges) == 9
            assert len(f.current) <= SMALL["window"]


@pytest.fixture(scope="module")
def quiet_plant() -> pl.DataFrame:
    from floorsight.features import window_features
    from floorsight.pipelines.context import SPEC_SCHEMA, ErpContext
    from floorsight.simulate import PlantOptions, make_plant

    plant = make_plant(
        PlantOptions(machines=1, start=T0, horizon=timedelta(hours=24), seed=4, sample_hz=1)
    )
    plant.faults = []
    ctx = ErpContext(plant.work_orders_frame(), pl.DataFrame(schema=SPEC_SCHEMA))
    parts, t = [], T0
    while t < T0 + timedelta(hours=24):
        parts.append(
            window_features(
                ctx.join(plant.readings(t, t + timedelta(hours=1))), timedelta(seconds=10)
            )
        )
        t += timedelta(hours=1)
    return pl.concat(parts).sort("window_start")


def test_fault_free_plant_is_not_drift_and_the_page_reads_what_the_stream_wrote(
    quiet_plant, tmp_path
) -> None:
    segments = segments_of(quiet_plant)
    Coverage().mark(segments)
    out = FeatureDriftModel(reference_windows=2160, window=1440, every=120).score_segments(
        segments, Context("M01")
    )
    rows = drift_rows(out)
    assert rows.filter(pl.col("detector") == "multivariate").height > 0
    assert not rows.filter(pl.col("detector") == "multivariate")["drifted"].any()
    assert not any(r["is_anomaly"] for r in out.scores)
    db = Database(tmp_path / "d.duckdb", [DRIFT])
    db.create()
    db.upsert({"drift": [rows]})
    db.upsert({"drift": [rows]})  # a replay writes the same keys: no duplicates
    product = rows["product"][0]
    sensor = rows.filter(pl.col("detector") == "psi")["feature"][0].split(".")[0]
    with db.read() as con:
        shown = queries.drift_rows(con, "M01", product, sensor, None)
    expected = rows.filter(
        (pl.col("product") == product)
        & (pl.col("feature").str.starts_with(f"{sensor}.") | (pl.col("feature") == "multivariate"))
    ).sort("window_end", "feature", "detector")
    assert shown.equals(expected.select(shown.columns))
