"""SPC in the stream: out-of-spec windows, run rules that page by setting, EWMA/CUSUM, and the
Hotelling T² chart per product (models/out_of_spec.py, spc_monitor.py, hotelling.py)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from floorsight.models.base import Context
from floorsight.models.hotelling import HotellingModel
from floorsight.models.machine import Segment
from floorsight.models.out_of_spec import OutOfSpecModel
from floorsight.models.spc_monitor import SPC, SpcModel

T0 = datetime(2026, 4, 6, tzinfo=UTC)
BORE = {("P", "bore"): (9.9, 10.0, 10.1), ("Q", "bore"): (19.9, 20.0, 20.1)}


def window(i: int, product: str = "P", order: str = "WO-1", **means: float) -> Segment:
    start = T0 + timedelta(seconds=10 * i)
    key = ("M01", start, start + timedelta(seconds=10), order, product, "LOT-1")
    return Segment(key, {s: {"n": 10, "mean": x} for s, x in means.items()})


def bores(values: list[float], product: str = "P") -> list[Segment]:
    return [window(i, product, bore=x) for i, x in enumerate(values)]


def in_control(rng: random.Random, n: int, sigma: float = 0.01) -> list[float]:
    return [10.0 + rng.gauss(0, sigma) for _ in range(n)]


def test_out_of_spec_flags_a_mean_outside_the_limits_and_names_it() -> None:
    rng = random.Random(4)
    segs = bores([*in_control(rng, 60), 10.05, 10.15])
    segs += [window(62 + i, "Q", bore=20.0 + rng.gauss(0, 0.01)) for i in range(5)]
    segs.append(window(70, temp=500.0))  # no spec for temp: not judged
    segs.append(window(71, "R", bore=3.0))  # a characteristic of other products: row, no limits
    rows = OutOfSpecModel().score_segments(segs, Context(specs=BORE)).scores
    assert len(rows) == 68 and {r["model"] for r in rows} == {"out_of_spec"}
    assert [i for i, r in enumerate(rows) if r["is_anomaly"]] == [61]
    assert rows[61]["evidence"] == "bore 10.15 out of spec [9.9, 10.1]"
    assert rows[60]["score"] == pytest.approx(0.5) and rows[61]["score"] == 1.0
    assert rows[67]["score"] == 0.0 and not rows[67]["is_anomaly"]


def test_out_of_spec_flags_are_the_windows_with_a_characteristic_beyond_its_spec() -> None:
    """The flags SpcModel raised before the split: any charted mean outside [lsl, usl]."""
    rng = random.Random(9)
    specs = {**BORE, ("P", "weight"): (47.4, 48.0, 48.6)}
    segs = [
        window(i, bore=10.0 + rng.gauss(0, 0.06), weight=48.0 + rng.gauss(0, 0.35))
        for i in range(2000)
    ]
    rows = OutOfSpecModel().score_segments(segs, Context(specs=specs)).scores
    expected = [
        any(
            not lsl <= seg.rows[c]["mean"] <= usl
            for (product, c), (lsl, _, usl) in specs.items()
            if product == "P" and c in seg.rows
        )
        for seg in segs
    ]
    assert [r["is_anomaly"] for r in rows] == expected
    assert 100 < sum(expected) < 1000
    assert all(r["score"] == 1.0 for r, e in zip(rows, expected, strict=True) if e)


def test_spc_names_every_rule_and_pages_none_unless_told() -> None:
    rng = random.Random(4)
    segs = bores([*in_control(rng, 60), 10.05])
    quiet = SpcModel(phase1=30).score_segments(segs, Context(specs=BORE)).scores
    assert "Nelson 1 (one point beyond 3 sigma)" in quiet[-1]["evidence"]
    assert not any(r["is_anomaly"] for r in quiet) and quiet[-1]["severity"] is None
    model = SpcModel(phase1=30, page={1: "warning"})
    rows = model.score_segments(segs, Context(specs=BORE)).scores
    assert [r["score"] for r in rows[:30]] == [0.0] * 30  # phase I
    last = rows[-1]
    assert last["is_anomaly"] and last["severity"] == "warning" and last["score"] == 1.0
    assert "Nelson 1 (one point beyond 3 sigma, warning)" in last["evidence"]
    assert "[LCL 9.9" in last["evidence"] and "UCL 10.0" in last["evidence"]
    assert not any(r["is_anomaly"] for r in rows[:-1])
    assert all(r["severity"] is None for r in rows[:-1])


def run_above(n: int, step: float = 0.0) -> list[float]:
    """30 alternating phase I points (center 10, σ from MR̄), then ``n`` points 0.5 σ above."""
    phase1 = [10.0 + (0.01 if i % 2 else -0.01) for i in range(30)]
    sigma = 0.02 / 1.128
    return phase1 + [10.0 + 0.5 * sigma + step * k for k in range(n)]


def rules_at(rows: list[dict]) -> list[str]:
    return [r["evidence"] for r in rows]


def test_western_electric_counts_a_run_of_eight_and_nelson_a_run_of_nine() -> None:
    specs = Context(specs=BORE)
    nelson = SpcModel(phase1=30).score_segments(bores(run_above(9)), specs).scores
    western = SpcModel(phase1=30, rules="western_electric").score_segments(
        bores(run_above(9)), specs
    )
    points = western.tables[SPC.name]
    we = rules_at(western.scores)
    run = "eight points in a row on one side of the center line"
    assert f"Western Electric 4 ({run})" in we[37] and we[36] == ""
    assert "Nelson 2" in rules_at(nelson)[38] and "Nelson 2" not in rules_at(nelson)[37]
    assert points[37]["rules"] == f"Western Electric 4 ({run})"
    # a trend is a Nelson rule (3) with no Western Electric counterpart
    trend = bores(run_above(7, step=0.001))
    assert "Nelson 3" in SpcModel(phase1=30).score_segments(trend, specs).scores[-1]["evidence"]
    we_trend = SpcModel(phase1=30, rules="western_electric").score_segments(trend, specs)
    assert "3" not in we_trend.scores[-1]["evidence"].split(":")[-1]


def test_a_paging_rule_flags_with_its_severity_and_an_unlisted_one_only_records() -> None:
    specs = Context(specs=BORE)
    quiet = SpcModel(phase1=30).score_segments(bores(run_above(9)), specs).scores
    assert "Nelson 2" in quiet[-1]["evidence"] and not quiet[-1]["is_anomaly"]
    paging = SpcModel(phase1=30, page={1: "warning", 2: "critical"})
    rows = paging.score_segments(bores(run_above(9)), specs).scores
    assert [i for i, r in enumerate(rows) if r["is_anomaly"]] == [38]
    assert rows[38]["severity"] == "critical"
    assert (
        "Nelson 2 (nine points in a row on one side of the center line, critical)"
        in (rows[38]["evidence"])
    )
    # settings from a TOML file have string keys
    toml = SpcModel(phase1=30, page={"2": "info"})
    assert toml.score_segments(bores(run_above(9)), specs).scores[38]["severity"] == "info"


def test_unknown_rule_sets_rules_and_severities_are_refused() -> None:
    with pytest.raises(ValueError, match="rules must be one of nelson, western_electric"):
        SpcModel(rules="shewhart")
    with pytest.raises(ValueError, match="Western Electric has no rule 5"):
        SpcModel(rules="western_electric", page={5: "warning"})
    with pytest.raises(ValueError, match="severity 'page' is not one of"):
        SpcModel(page={1: "page"})


def test_ewma_and_cusum_catch_a_small_sustained_shift_the_i_chart_misses() -> None:
    rng = random.Random(0)
    values = in_control(rng, 100) + [10.0075 + rng.gauss(0, 0.01) for _ in range(100)]
    specs = Context(specs=BORE)
    plain = SpcModel(phase1=50, page={1: "warning"}).score_segments(bores(values), specs).scores
    assert sum(r["is_anomaly"] for r in plain[100:]) <= 2  # 0.75 σ: rule 1 hardly fires
    for setting in ("ewma", "cusum"):
        model = SpcModel(phase1=50, **{setting: ["bore"]})
        rows = model.score_segments(bores(values), specs).scores
        flagged = [i for i, r in enumerate(rows) if r["is_anomaly"]]
        assert not [i for i in flagged if i < 100], setting  # no false signal before the shift
        assert flagged and flagged[0] < 120, setting
        assert setting.upper() in rows[flagged[0]]["evidence"]
        assert rows[flagged[0]]["severity"] == "warning"


def test_spc_table_has_one_point_per_charted_characteristic_with_its_limits() -> None:
    rng = random.Random(2)
    segs = bores(in_control(rng, 40))
    segs.append(window(40, "Q", bore=20.0))  # another product: its own phase I
    out = SpcModel(phase1=30).score_segments(segs, Context(specs=BORE))
    points = out.tables[SPC.name]
    assert len(points) == 41 and set(points[0]) == set(SPC.columns)
    assert points[29]["center"] is None and points[30]["center"] is not None
    assert points[30]["lcl"] < points[30]["center"] < points[30]["ucl"]
    assert (points[30]["lsl"], points[30]["usl"]) == (9.9, 10.1)
    assert points[40]["product"] == "Q" and points[40]["center"] is None


def test_a_batch_and_the_same_windows_split_give_the_same_spc_rows() -> None:
    rng = random.Random(5)
    segs = bores(in_control(rng, 80) + [10.03 + rng.gauss(0, 0.01) for _ in range(40)])
    specs = Context(specs=BORE)
    for make in (
        lambda: SpcModel(phase1=30, ewma=["bore"], cusum=["bore"]),
        lambda: SpcModel(phase1=30, rules="western_electric", page={1: "critical", 4: "info"}),
    ):
        whole = make().score_segments(segs, specs)
        model, scores, points = make(), [], []
        for k in range(0, len(segs), 7):
            out = model.score_segments(segs[k : k + 7], specs)
            scores += out.scores
            points += out.tables.get(SPC.name, [])
        assert scores == whole.scores and points == whole.tables[SPC.name]


# -- Hotelling T² ----------------------------------------------------------------------------

PAIR = {("P", "bore"): (9.9, 10.0, 10.1), ("P", "depth"): (4.9, 5.0, 5.1), ("P", "lip"): (0, 1, 2)}


def correlated(rng: random.Random, n: int, apart: float = 0.0, start: int = 0) -> list[Segment]:
    """Three characteristics: bore and depth correlated 0.9 (σ 0.01), lip independent."""
    out = []
    for i in range(start, start + n):
        common = rng.gauss(0, 0.01)
        bore = 10.0 + common + apart
        depth = 5.0 + 0.9 * common + rng.gauss(0, 0.01 * 0.19**0.5) - apart
        out.append(window(i, bore=bore, depth=depth, lip=1.0 + rng.gauss(0, 0.1)))
    return out


def test_hotelling_flags_its_alpha_of_in_control_windows() -> None:
    flagged = total = 0
    for seed in range(20):
        model = HotellingModel(phase1=100, alpha=0.01)
        rows = model.score_segments(correlated(random.Random(seed), 1100), Context(specs=PAIR))
        phase2 = rows.scores[100:]
        total += len(phase2)
        flagged += sum(r["is_anomaly"] for r in phase2)
        assert all(0.0 <= r["score"] <= 1.0 for r in rows.scores)
    assert 0.006 < flagged / total < 0.016


def test_hotelling_sees_a_correlation_break_no_single_chart_sees() -> None:
    rng = random.Random(0)
    segs = correlated(rng, 200)
    # bore up by one σ, depth down by one σ: each within its own 3 σ limits
    segs += correlated(rng, 30, apart=0.01, start=200)
    specs = Context(specs=PAIR)
    spc = SpcModel(phase1=100, page={1: "warning"}).score_segments(segs, specs).scores
    assert sum(r["is_anomaly"] for r in spc[200:]) <= 2
    t2 = HotellingModel(phase1=100).score_segments(segs, specs).scores
    assert sum(r["is_anomaly"] for r in t2[:200]) <= 1
    broken = t2[200:]
    assert sum(r["is_anomaly"] for r in broken) >= 20
    top = broken[-1]["evidence"].split("; ")[1]
    assert top.startswith(("bore", "depth")) and "lip" not in top.split(", ")[0]


def test_hotelling_skips_a_product_with_one_characteristic_unless_told_to_chart_sensors() -> None:
    rng = random.Random(1)
    segs = [
        window(i, bore=10 + rng.gauss(0, 0.01), temp=40 + rng.gauss(0, 0.1)) for i in range(120)
    ]
    specs = Context(specs=BORE)
    assert HotellingModel().score_segments(segs, specs).scores == []
    rows = HotellingModel(phase1=100, fallback="sensors").score_segments(segs, specs).scores
    assert len(rows) == 120 and {r["model"] for r in rows} == {"hotelling"}
