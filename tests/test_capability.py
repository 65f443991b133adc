"""Process capability in the stream (``models/capability.py``) against the textbook formulas.

Every expected value is computed here from the readings themselves with numpy: σ within is the
pooled within-window standard deviation, σ overall the sample standard deviation of all the
readings, and Cp = (USL - LSL) / 6σ within, Cpk = min(USL - x̄, x̄ - LSL) / 3σ within, Pp and
Ppk likewise with σ overall (Montgomery, *Introduction to Statistical Quality Control*, 8.2).
"""

from __future__ import annotations

import pickle
from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest

from floorsight.models.base import Context
from floorsight.models.capability import CAPABILITY, CapabilityModel
from floorsight.models.machine import Segment
from floorsight.storage import Database

T0 = datetime(2026, 1, 5, 6, 0, tzinfo=UTC)
W = timedelta(seconds=10)
BORE = "bore_mm"
LSL, TARGET, USL = 11.95, 12.0, 12.05
CONTEXT = Context("M1", specs={("PA", BORE): (LSL, TARGET, USL)})


def window(i: int, xs, work_order: str = "WO-1", product: str = "PA") -> Segment:
    """Window ``i`` of machine M1 with the readings ``xs`` of the bore (and a sensor without
    spec limits, which is no characteristic)."""
    xs = np.asarray(xs, dtype=float)
    start = T0 + i * W
    stats = {
        "n": len(xs),
        "mean": float(xs.mean()),
        "std": float(xs.std(ddof=1)) if len(xs) > 1 else None,
        "min": float(xs.min()),
        "max": float(xs.max()),
        "last": float(xs[-1]),
    }
    other = {**stats, "mean": 40.0, "std": 0.1}
    key = ("M1", start, start + W, work_order, product, "LOT-1")
    return Segment(key, {BORE: stats, "spindle_temp_c": other})


def readings(rng, k: int, mean: float, sigma: float, n: int = 10) -> list[np.ndarray]:
    return [rng.normal(mean, sigma, n) for _ in range(k)]


def textbook(groups: list[np.ndarray]) -> dict[str, float]:
    allx = np.concatenate(groups)
    within = np.sqrt(
        sum((len(g) - 1) * g.var(ddof=1) for g in groups) / sum(len(g) - 1 for g in groups)
    )
    overall, mean = allx.std(ddof=1), allx.mean()
    near = min(USL - mean, mean - LSL)
    return {
        "n": len(allx),
        "mean": mean,
        "sigma_within": within,
        "sigma_overall": overall,
        "cp": (USL - LSL) / (6 * within),
        "cpk": near / (3 * within),
        "pp": (USL - LSL) / (6 * overall),
        "ppk": near / (3 * overall),
    }


def assert_textbook(row: dict, groups: list[np.ndarray]) -> None:
    expected = textbook(groups)
    assert row["n"] == expected.pop("n")
    assert row["n_windows"] == len(groups)
    assert {k: row[k] for k in expected} == pytest.approx(expected, rel=1e-9)


def rows(out, scope: str, final: bool | None = None) -> list[dict]:
    table = out.tables.get("capability", [])
    return [r for r in table if r["scope"] == scope and (final is None or r["final"] == final)]


def test_values_equal_the_textbook_formulas_on_windows_of_unequal_size():
    rng = np.random.default_rng(1)
    # windows of 2..12 readings, the process wandering between them (between > 0)
    groups = [rng.normal(12.0 + 0.004 * np.sin(i / 5), 0.01, 2 + i % 11) for i in range(60)]
    model = CapabilityModel(min_windows=30, every_windows=60)
    out = model.score_segments([window(i, g) for i, g in enumerate(groups)], CONTEXT)
    (rolling,) = rows(out, "rolling")
    (order,) = rows(out, "work_order")
    for row in (rolling, order):
        assert_textbook(row, groups)
        assert row["basis"] == "subgroups"
        assert (row["lsl"], row["usl"]) == (LSL, USL)
        assert row["window_end"] == T0 + 60 * W and row["work_order"] == "WO-1"
    # the wander is between windows: the long-term sigma is the larger
    assert rolling["sigma_overall"] > rolling["sigma_within"]
    assert set(rolling) == set(CAPABILITY.columns)


def test_a_known_sigma_gives_its_cp():
    """σ = 0.01 against a tolerance of 0.1: Cp = 0.1 / 0.06 = 1.667, Cpk alike when centred."""
    rng = np.random.default_rng(2)
    groups = readings(rng, 360, TARGET, 0.01)
    out = CapabilityModel(every_windows=360).score_segments(
        [window(i, g) for i, g in enumerate(groups)], CONTEXT
    )
    (row,) = rows(out, "rolling")
    assert row["cp"] == pytest.approx(1 / 0.6, rel=0.03)
    assert row["cpk"] == pytest.approx(1 / 0.6, rel=0.05)
    assert row["pp"] == pytest.approx(1 / 0.6, rel=0.03)


def test_rolling_spans_the_products_orders_and_an_order_only_its_own_run():
    rng = np.random.default_rng(3)
    first = readings(rng, 50, TARGET, 0.01)
    second = readings(rng, 40, TARGET + 0.01, 0.01)
    segments = [window(i, g, "WO-1") for i, g in enumerate(first)]
    segments += [window(50 + i, g, "WO-2") for i, g in enumerate(second)]
    model = CapabilityModel(rolling_windows=60, every_windows=10)
    out = model.score_segments(segments, CONTEXT)

    # WO-1's final row: its whole run, as of its last window, written when WO-2 starts
    (final,) = rows(out, "work_order", final=True)
    assert (final["work_order"], final["window_end"]) == ("WO-1", T0 + 50 * W)
    assert_textbook(final, first)
    # WO-2's running row after its 40 windows: its own windows only
    last_order = rows(out, "work_order", final=False)[-1]
    assert (last_order["work_order"], last_order["window_end"]) == ("WO-2", T0 + 90 * W)
    assert_textbook(last_order, second)
    # the rolling row at the end: the product's last 60 windows, across both orders
    last_rolling = rows(out, "rolling")[-1]
    assert last_rolling["work_order"] == "WO-2"
    assert_textbook(last_rolling, (first + second)[-60:])
    # a row every 10 windows of each scope: a trend, not a row per window
    assert len(rows(out, "rolling")) == 9
    assert [r["window_end"] for r in rows(out, "work_order", final=False)] == [
        T0 + k * W for k in (10, 20, 30, 40, 50, 60, 70, 80, 90)
    ]


def test_the_alert_fires_once_a_shift_drops_cpk_below_the_level():
    """Centred with σ 0.01 (Cpk 1.67), then shifted by 0.02 (Cpk 1.0): no flag before the
    shift, flags once the shifted windows dominate the rolling set."""
    rng = np.random.default_rng(4)
    groups = readings(rng, 100, TARGET, 0.01) + readings(rng, 200, TARGET + 0.02, 0.01)
    model = CapabilityModel(rolling_windows=100, min_windows=30)
    out = model.score_segments([window(i, g) for i, g in enumerate(groups)], CONTEXT)
    flags = [s["is_anomaly"] for s in out.scores]
    # re-estimated every gcd(100, 60) = 20 windows: first with 30 windows or more at the 40th
    assert len(out.scores) == 300 - 39
    assert not any(flags[: 100 - 39])
    first = flags.index(True) + 39
    assert 100 < first < 200 and (first + 1) % 20 == 0
    assert all(flags[200 - 39 :])
    row = out.scores[-1]
    assert row["model"] == "capability" and row["window_start"] == T0 + 299 * W
    cpk = textbook(groups[-100:])["cpk"]
    assert row["evidence"] == f"Cpk {cpk:.2f} < 1.33 over 100 windows (n=1000) of bore_mm"
    # score: how far below the level, in 0..1
    assert row["score"] == pytest.approx(1 - cpk / 1.33)
    assert all(0 <= s["score"] <= 1 for s in out.scores)


def test_the_score_holds_between_re_estimates():
    """Each window carries the rolling estimate of the newest block end (every 20 windows
    here), which is the textbook capability of the windows up to it."""
    rng = np.random.default_rng(13)
    groups = readings(rng, 200, TARGET + 0.01, 0.01)
    model = CapabilityModel(rolling_windows=100, min_windows=30)
    out = model.score_segments([window(i, g) for i, g in enumerate(groups)], CONTEXT)
    by_window = {s["window_start"]: s["score"] for s in out.scores}
    for i in range(39, 200):
        estimated_at = (i + 1) // 20 * 20  # the pooled windows at the newest block end
        cpk = textbook(groups[max(0, estimated_at - 100) : estimated_at])["cpk"]
        assert by_window[T0 + i * W] == pytest.approx(max(0.0, 1 - cpk / 1.33), rel=1e-9)


def test_no_flag_before_min_windows_even_when_incapable():
    rng = np.random.default_rng(5)
    groups = readings(rng, 70, TARGET + 0.03, 0.01)  # Cpk 0.67 from the start
    segments = [window(i, g) for i, g in enumerate(groups)]
    # re-estimated every 10 windows: judged from the 30th window (min_windows) on
    out = CapabilityModel(min_windows=30, every_windows=10).score_segments(segments, CONTEXT)
    assert [s["window_start"] for s in out.scores] == [T0 + i * W for i in range(29, 70)]
    assert all(s["is_anomaly"] for s in out.scores)
    # by default every 60 windows: the first estimate is at the 60th
    out = CapabilityModel(min_windows=30).score_segments(segments, CONTEXT)
    assert [s["window_start"] for s in out.scores] == [T0 + i * W for i in range(59, 70)]


def test_the_level_is_a_setting():
    rng = np.random.default_rng(6)
    groups = readings(rng, 40, TARGET + 0.02, 0.01)  # Cpk about 1.0
    segments = [window(i, g) for i, g in enumerate(groups)]
    assert all(s["is_anomaly"] for s in CapabilityModel().score_segments(segments, CONTEXT).scores)
    lenient = CapabilityModel(cpk_level=0.8).score_segments(segments, CONTEXT)
    assert not any(s["is_anomaly"] for s in lenient.scores)


def test_state_stays_bounded_and_the_rolling_sums_stay_exact():
    """After 21,600 windows (2.5 days of 10 s windows) the rolling row still equals the
    textbook one on the last 360 windows: blocks are combined afresh, nothing is subtracted."""
    rng = np.random.default_rng(7)
    model = CapabilityModel()
    groups = []
    sizes = []
    for batch in range(18):
        part = readings(rng, 1200, TARGET + 0.005 * np.sin(batch), 0.01)
        groups += part
        segments = [window(len(groups) - 1200 + i, g) for i, g in enumerate(part)]
        out = model.score_segments(segments, CONTEXT)
        sizes.append(len(pickle.dumps(model)))
    assert max(sizes[2:]) < 1.05 * sizes[1]
    assert model.score_segments([], CONTEXT).scores == []
    last = rows(out, "rolling")[-1]
    assert last["window_end"] == T0 + 21600 * W
    assert_textbook(last, groups[-360:])
    assert out.scores[-1]["score"] == pytest.approx(
        max(0.0, 1 - textbook(groups[-360:])["cpk"] / 1.33), rel=1e-9
    )


def test_a_characteristic_held_per_cycle_is_read_as_parts():
    """A part's weight is published once per part and held: each window sees one value (no
    spread), so capability is that of the parts, as ``models.spc.capability`` computes it."""
    rng = np.random.default_rng(8)
    parts = rng.normal(TARGET, 0.01, 100)
    # three windows per part, each reading the held value
    segments = [window(i, [parts[i // 3]] * 10) for i in range(300)]
    out = CapabilityModel(every_windows=300).score_segments(segments, CONTEXT)
    (row,) = rows(out, "rolling")
    within = np.abs(np.diff(parts)).mean() / 1.128
    assert row["basis"] == "parts"
    assert (row["n"], row["n_windows"]) == (100, 300)
    assert row["mean"] == pytest.approx(parts.mean())
    assert row["cp"] == pytest.approx((USL - LSL) / (6 * within))
    assert row["pp"] == pytest.approx((USL - LSL) / (6 * parts.std(ddof=1)))


def test_quarantined_windows_are_scored_but_not_pooled():
    rng = np.random.default_rng(9)
    groups = readings(rng, 60, TARGET, 0.01)
    stuck = [window(60 + i, [12.049] * 10) for i in range(10)]
    context = Context("M1", specs=CONTEXT.specs, quarantine={s.start for s in stuck})
    model = CapabilityModel(every_windows=10)
    out = model.score_segments([window(i, g) for i, g in enumerate(groups)] + stuck, context)
    assert len(out.scores) == 70 - 29
    # 60 pooled windows: rows at the 10th..60th, none at the 70th, the stuck windows left out
    rolling = rows(out, "rolling")
    assert [r["n_windows"] for r in rolling] == [10, 20, 30, 40, 50, 60]
    assert_textbook(rolling[-1], groups)
    assert out.scores[-1]["score"] == out.scores[-11]["score"]


def test_products_without_spec_limits_and_empty_input_give_nothing():
    rng = np.random.default_rng(10)
    segments = [window(i, g, product="PX") for i, g in enumerate(readings(rng, 100, 12, 0.01))]
    model = CapabilityModel()
    assert model.score_segments(segments, CONTEXT).scores == []
    assert model.score_segments([], CONTEXT).tables == {}


def test_rows_fit_the_capability_table(tmp_path):
    rng = np.random.default_rng(11)
    segments = [window(i, g) for i, g in enumerate(readings(rng, 120, TARGET, 0.01))]
    segments.append(window(120, [12.0, 12.01], "WO-2"))
    out = CapabilityModel(every_windows=60).score_segments(segments, CONTEXT)
    table = out.tables["capability"]
    db = Database(tmp_path / "f.duckdb", [CAPABILITY])
    db.create()
    db.upsert({"capability": [pl.DataFrame(table)]})
    db.upsert({"capability": [pl.DataFrame(table)]})  # idempotent: a replay writes nothing new
    stored = db.query(
        "SELECT scope, final, count(*) AS rows FROM capability GROUP BY ALL ORDER BY ALL"
    )
    assert stored.rows() == [
        ("rolling", False, 2),
        ("work_order", False, 2),
        ("work_order", True, 1),
    ]


def test_a_held_characteristic_needs_as_many_parts_as_windows_before_it_flags():
    rng = np.random.default_rng(12)
    parts = rng.normal(TARGET, 0.03, 50)  # Cpk about 0.55
    segments = [window(i, [parts[i // 3]] * 10) for i in range(150)]
    out = CapabilityModel(min_windows=30, every_windows=10).score_segments(segments, CONTEXT)
    # the 30th part arrives in window 87: 30 windows were pooled long before; the estimate
    # after it is the one at the 90th window
    assert out.scores[0]["window_start"] == T0 + 89 * W
    assert all(s["is_anomaly"] for s in out.scores)
    assert out.scores[0]["evidence"].endswith("over 90 windows (n=30) of bore_mm")
