"""NAB's scorer on hand-made series whose scores follow from NAB's definitions by hand, and
``evaluate`` on two real series of the development data."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest

from floorsight.evaluation import nab

DATA = Path(
    os.environ.get("FLOORSIGHT_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")
)
STANDARD = nab.CostMatrix(tp_weight=1.0, fp_weight=0.11, fn_weight=1.0)
LOW_FP = nab.CostMatrix(tp_weight=1.0, fp_weight=0.22, fn_weight=1.0)
LOW_FN = nab.CostMatrix(tp_weight=1.0, fp_weight=0.11, fn_weight=2.0)


def series(
    detections: dict[int, float],
    windows: list[tuple[int, int]] = [(50, 59)],  # noqa: B006 (never mutated)
    rows: int = 100,
    name: str = "f.csv",
) -> nab.ScoredRows:
    """A file of ``rows`` rows (time stamp = row number; 15 probationary rows for 100), score 0
    except at ``detections``, with label windows given by their first and last rows."""
    scores = np.zeros(rows)
    for i, s in detections.items():
        scores[i] = s
    return nab.prepare(name, np.arange(rows), scores, windows)


def raw(rows: nab.ScoredRows, cost: nab.CostMatrix = STANDARD, threshold: float = 0.5) -> float:
    return nab.score_file(rows, cost, threshold)["raw"]


def tanh_ratio(width: float) -> float:
    """``sigma(-1 / width) / sigma(-1)``: NAB's weight of a detection on a window's last row
    (``2 sigmoid(5 x) - 1 = tanh(5 x / 2)``)."""
    return math.tanh(2.5 / width) / math.tanh(2.5)


def test_the_scaled_sigmoid_at_nab_s_documented_points() -> None:
    assert nab.scaled_sigmoid(-1.0) == pytest.approx(0.98661, abs=1e-5)
    assert nab.scaled_sigmoid(-0.5) == pytest.approx(0.84828, abs=1e-5)
    assert nab.scaled_sigmoid(0.0) == pytest.approx(0.0)
    assert nab.scaled_sigmoid(1.0) == pytest.approx(-0.98661, abs=1e-5)
    assert nab.scaled_sigmoid(3.5) == -1.0


def test_the_probationary_period_is_15_percent_capped_at_750_rows() -> None:
    assert nab.probationary_length(100) == 15
    assert nab.probationary_length(1127) == 169
    assert nab.probationary_length(4032) == 604
    assert nab.probationary_length(15902) == 750


def test_a_detection_on_the_first_row_of_a_window_is_worth_the_tp_weight() -> None:
    assert raw(series({50: 0.9})) == pytest.approx(1.0)


def test_a_detection_on_the_last_row_of_a_window_is_worth_almost_nothing() -> None:
    assert raw(series({59: 0.9})) == pytest.approx(tanh_ratio(10))
    wide = series({79: 0.9}, windows=[(30, 79)], rows=200)
    assert raw(wide) == pytest.approx(tanh_ratio(50))
    assert raw(wide) < 0.06


def test_only_the_earliest_detection_of_a_window_counts() -> None:
    # rows 55..59 of a 10-row window: the first of them, 5 rows from the end
    expected = math.tanh(2.5 * 5 / 10) / math.tanh(2.5)
    assert raw(series({55: 0.9, 56: 0.9, 58: 0.9, 59: 0.9})) == pytest.approx(expected)
    assert raw(series({55: 0.9})) == pytest.approx(expected)


def test_a_missed_window_costs_the_fn_weight() -> None:
    assert raw(series({})) == pytest.approx(-1.0)
    assert raw(series({}), LOW_FN) == pytest.approx(-2.0)
    assert raw(series({}, windows=[(30, 39), (60, 69)])) == pytest.approx(-2.0)


def test_a_false_positive_before_any_window_costs_the_fp_weight() -> None:
    assert raw(series({30: 0.9, 50: 0.9})) == pytest.approx(1.0 - 0.11)
    assert raw(series({30: 0.9, 50: 0.9}), LOW_FP) == pytest.approx(1.0 - 0.22)
    assert raw(series({30: 0.9}, windows=[])) == pytest.approx(-0.11)


def test_a_false_positive_is_weighted_by_its_distance_after_the_preceding_window() -> None:
    # window rows 50..59 (width 10): one row after it is 1/9 of a width away, 9 rows after 1
    just_after = raw(series({60: 0.9})) + 1.0  # the window itself is missed: -1
    assert just_after == pytest.approx(-0.11 * math.tanh(2.5 / 9))
    assert -0.11 * 0.3 < just_after < 0  # much cheaper than one far away
    assert raw(series({68: 0.9})) + 1.0 == pytest.approx(-0.11 * math.tanh(2.5))
    # beyond three widths: the full cost, as before any window
    assert raw(series({90: 0.9})) + 1.0 == pytest.approx(-0.11)


def test_the_probationary_period_is_not_scored() -> None:
    # rows 0..14 of 100 are probationary: a detection there is no false positive
    assert raw(series({3: 0.9, 14: 0.9})) == pytest.approx(-1.0)
    assert raw(series({3: 0.9, 15: 0.9})) == pytest.approx(-1.11)
    # a window wholly in the probationary period is neither detected nor missed
    early = series({}, windows=[(2, 8), (50, 59)])
    assert early.windows_scored == 1
    assert raw(early) == pytest.approx(-1.0)


def test_the_sweep_finds_the_threshold_with_the_best_total() -> None:
    # a window found at 0.8 (worth 1), ten false positives at 0.9, more at 0.5
    rows = series({50: 0.8, **{20 + i: 0.9 for i in range(10)}, 95: 0.5, 96: 0.5})
    # standard: 1 - 10 * 0.11 = -0.1 beats detecting nothing (-1)
    assert nab.best_threshold([rows], STANDARD) == pytest.approx((0.8, -0.1))
    # low FP: 1 - 10 * 0.22 = -1.2 is worse than detecting nothing
    assert nab.best_threshold([rows], LOW_FP) == pytest.approx((nab.NO_DETECTION, -1.0))
    thresholds, totals = nab.sweep([rows], STANDARD)
    assert thresholds.tolist() == pytest.approx([nab.NO_DETECTION, 0.9, 0.8, 0.5, 0.0])
    assert totals[:3] == pytest.approx([-1.0, -2.1, -0.1])


def test_the_threshold_is_shared_by_the_corpus() -> None:
    # file a alone would take 0.8; file b's false positives at 0.85 make 0.9 the corpus's best
    a = series({50: 0.8, 55: 0.9}, name="a.csv")
    b = series({**{20 + i: 0.85 for i in range(20)}, 50: 0.95}, name="b.csv")
    assert nab.best_threshold([a], STANDARD)[0] == pytest.approx(0.8)
    threshold, total = nab.best_threshold([a, b], STANDARD)
    assert threshold == pytest.approx(0.9)
    assert total == pytest.approx(raw(a, threshold=0.9) + raw(b, threshold=0.9))


def test_the_vectorised_sweep_equals_scoring_every_threshold_one_by_one() -> None:
    rng = np.random.default_rng(7)
    files = []
    for k in range(4):
        n = int(rng.integers(120, 400))
        cuts = np.sort(rng.choice(np.arange(20, n), size=4, replace=False))
        scores = np.round(rng.random(n), 2)  # ties between rows
        windows = [(int(cuts[0]), int(cuts[1])), (int(cuts[2]), int(cuts[3]))]
        files.append(nab.prepare(f"{k}.csv", np.arange(n), scores, windows))
    for cost in (STANDARD, LOW_FP, LOW_FN):
        thresholds, totals = nab.sweep(files, cost)
        assert len(thresholds) == 1 + len(
            np.unique(np.concatenate([f.anomaly_score[f.scored] for f in files]))
        )
        for t, total in zip(thresholds, totals, strict=True):
            assert total == pytest.approx(sum(raw(f, cost, t) for f in files), abs=1e-9)


def test_null_and_perfect_detectors_score_0_and_100() -> None:
    windows = [(300, 309), (600, 619)]
    perfect = series({300: 1.0, 600: 1.0}, windows=windows, rows=1000)
    null = series({}, windows=windows, rows=1000)
    for cost in (STANDARD, LOW_FP, LOW_FN):
        s_null, s_perfect = nab.null_score([null], cost), nab.perfect_score([null], cost)
        # the null detector's best is to detect nothing (every row costs more): both missed
        assert s_null == pytest.approx(-2 * cost.fn_weight)
        assert s_perfect == pytest.approx(2.0)
        for rows, expected in ((perfect, 100.0), (null, 0.0)):
            _, best = nab.best_threshold([rows], cost)
            assert nab.normalised(best, s_null, s_perfect) == pytest.approx(expected)


def test_the_null_detector_s_threshold_is_swept_too() -> None:
    # a window over rows 15..94: flagging every row finds it on its first scored row and costs
    # only five false positives just after it, which beats missing it
    rows = series({}, windows=[(15, 94)])
    after = sum(-0.11 * math.tanh(2.5 * k / 79) for k in range(1, 6))
    assert nab.null_score([rows], STANDARD) == pytest.approx(1.0 + after)


def test_normalisation_of_a_partial_detector() -> None:
    # one of two windows found on its first row, one false positive before them (standard):
    # S = 1 - 1 - 0.11 = -0.11, S_null = -2, S_perfect = 2
    rows = series({20: 0.9, 30: 0.9}, windows=[(30, 39), (60, 69)])
    result = nab.score_corpus([rows], {"standard": STANDARD})["standard"]
    assert result["threshold"] == pytest.approx(0.9)
    assert result["raw"] == pytest.approx(-0.11)
    assert (result["null"], result["perfect"]) == pytest.approx((-2.0, 2.0))
    assert result["score"] == pytest.approx(100 * (-0.11 + 2) / 4)
    assert result["files"]["f.csv"]["windows_detected"] == 1
    assert result["files"]["f.csv"]["false_positives"] == 1


def test_a_window_that_does_not_start_on_a_row_is_refused() -> None:
    with pytest.raises(ValueError, match="does not start and end on a row"):
        nab.prepare("f.csv", np.arange(0, 200, 2), np.zeros(100), [(51, 60)])


NAB = DATA / "nab"
TWO = ["realTraffic/speed_7578.csv", "realAdExchange/exchange-3_cpc_results.csv"]


@pytest.mark.skipif(not (NAB / "labels").is_dir(), reason="no NAB development data")
def test_a_file_without_labels_is_refused() -> None:
    with pytest.raises(ValueError, match="not in"):
        nab.evaluate(NAB, files=["realTweets/Twitter_volume_GOOG.csv"])


@pytest.mark.skipif(not (NAB / "labels").is_dir(), reason="no NAB development data")
def test_evaluate_on_two_real_series() -> None:
    result = nab.evaluate(NAB, files=TWO)
    json.dumps(result)  # JSON-able as it is
    assert result["files"] == 2
    assert result["rows"] == 1127 + 1538
    assert result["windows"] == 4 + 3
    assert set(result["profiles"]) == {"standard", "reward_low_FP_rate", "reward_low_FN_rate"}
    for p in result["profiles"].values():
        assert set(p["files"]) == set(TWO)
        assert p["null"] <= p["raw"] <= p["perfect"]
        assert 0.0 <= p["score"] <= 100.0
        assert p["raw"] == pytest.approx(sum(f["raw"] for f in p["files"].values()))
        for f in p["files"].values():
            assert 0 <= f["windows_detected"] <= f["windows"]
    assert result["leaderboard"]["series"] == 58
    assert result["leaderboard"]["detectors"]["Numenta HTM"]["standard"] == 70.5
    lines = nab.summary(result)
    assert lines[0].startswith("NAB, 2 series")
    assert any("standard" in line for line in lines[1:])
