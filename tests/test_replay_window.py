"""The replay's window-mean Mahalanobis detector (what `floorsight eval skab` runs), per entity."""

from __future__ import annotations

import math
import random
from dataclasses import replace

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from floorsight.models.replay import ReplaySettings, _window_features, replay_frame

SETTINGS = ReplaySettings(
    detector="mahalanobis", window=5, phase_one=150, grace_period=20, half_life=50.0
)


def _machine(name: str, n: int = 400, fault: tuple[int, int] = (250, 320), seed: int = 0):
    """Flow and pressure of one pump; the flow drops by 3 sd over ``fault``."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        drop = 3.0 if fault[0] <= i < fault[1] else 0.0
        rows.append(
            {
                "t": 2 * i + (1 if name == "P2" else 0),
                "pump": name,
                "flow_l_min": rng.gauss(32, 1) - drop,
                "pressure_bar": rng.gauss(1.5, 0.1),
            }
        )
    return pl.DataFrame(rows)


def test_window_features_are_trailing_means_per_entity_skipping_gaps() -> None:
    frame = pl.DataFrame(
        {
            "pump": ["P1", "P2", "P1", "P1", "P2", "P1"],
            "flow": [1.0, 100.0, 3.0, math.nan, 200.0, 8.0],
        }
    )
    got = _window_features(frame, ["flow"], 3, "pump")["flow"].to_list()
    # P1: 1 -> 1; 1,3 -> 2; 1,3,NaN -> 2; 3,NaN,8 -> 5.5;  P2: 100 -> 100; 100,200 -> 150
    assert got == [1.0, 100.0, 2.0, 2.0, 150.0, 5.5]


def test_a_fault_is_flagged_after_phase_one_and_nothing_before() -> None:
    out = replay_frame(_machine("P1"), "t", settings=SETTINGS)
    flagged = out.with_row_index("i").filter(pl.col("is_anomaly") == 1)["i"].to_list()
    assert min(flagged) >= 150  # Phase I flags nothing
    # the limit is about the largest of 130 in-control scores: about 1 false alarm in 100 rows
    assert sum(i < 250 for i in flagged) <= 5
    inside = sum(250 <= i < 325 for i in flagged)  # the window trails the fault by 4 rows
    assert inside >= 0.8 * 75
    assert out["anomaly_score"].is_between(0, 1).all()


def test_the_detector_never_looks_ahead() -> None:
    frame = _machine("P1")
    whole = replay_frame(frame, "t", settings=SETTINGS)
    for k in (100, 260, 331):
        assert_frame_equal(replay_frame(frame.head(k), "t", settings=SETTINGS), whole.head(k))


def test_each_entity_has_its_own_detector() -> None:
    p1, p2 = _machine("P1", seed=1), _machine("P2", fault=(100, 120), seed=2)
    both = replay_frame(pl.concat([p1, p2]), "t", "pump", settings=SETTINGS)
    for name, alone in (("P1", p1), ("P2", p2)):
        assert_frame_equal(
            both.filter(pl.col("pump") == name),
            replay_frame(alone, "t", "pump", settings=SETTINGS),
        )


def test_only_the_chosen_sensors_are_scored() -> None:
    frame = _machine("P1").with_columns(
        pressure_bar=pl.when(pl.col("t") > 500).then(9.0).otherwise(pl.col("pressure_bar"))
    )
    by_flow = replay_frame(frame, "t", settings=replace(SETTINGS, sensors=("flow_l_min",)))
    by_all = replay_frame(frame, "t", settings=SETTINGS)
    after = pl.col("t") > 700  # the pressure has jumped, the flow is back to normal
    assert by_flow.filter(after)["is_anomaly"].sum() <= 5
    assert by_all.filter(after)["is_anomaly"].sum() == by_all.filter(after).height


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (ReplaySettings(detector="isolation"), "unknown detector"),
        (ReplaySettings(sensors=("temperature",)), "no numeric sensor column"),
        (ReplaySettings(window=0), "window must be"),
    ],
)
def test_bad_settings_name_the_problem(settings: ReplaySettings, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        replay_frame(_machine("P1", n=10), "t", settings=settings)
