"""Known answers for the per-machine models of the alerting engine: sensor health (stuck,
missing, spiking), order offset (bad lot) and order drift (tool wear), and the changeover rule."""

from __future__ import annotations

import json
import random
from datetime import timedelta

import polars as pl

from floorsight.models.order_drift import OrderDriftModel
from floorsight.models.order_offset import OrderOffsetModel
from floorsight.models.sensor_health import SensorHealthModel
from tests.conftest import T0


def _window(i: int, sensor: str, mean: float, **over) -> dict:
    start = T0 + timedelta(seconds=10 * i)
    row = {
        "machine_id": "M1",
        "sensor": sensor,
        "window_start": start,
        "window_end": start + timedelta(seconds=10),
        "work_order": over.pop("work_order", "WO-1"),
        "product": over.pop("product", "P"),
        "material_lot": "L",
        "n": 10,
        "mean": mean,
        "std": 1.0,
        "min": mean - 1.6,
        "max": mean + 1.6,
        "last": mean,
    }
    row.update(over)
    return row


def _normal(rng: random.Random, i: int, sensors=("temp", "flow")) -> list[dict]:
    return [_window(i, s, 40 + rng.gauss(0, 0.3)) for s in sensors]


def test_sensor_health_flags_exactly_the_faulty_windows() -> None:
    rng = random.Random(1)
    model = SensorHealthModel(grace_windows=60)
    warm = model.score(pl.DataFrame([r for i in range(100) for r in _normal(rng, i)]))
    assert not warm["is_anomaly"].any()
    rows = []
    for i in range(100, 120):
        temp, flow = _normal(rng, i)
        if 105 <= i < 110:  # flow missing while temp reports: dropout
            rows.append(temp)
            continue
        if i == 112:  # one spike of 12 sd in temp
            temp["max"] = temp["mean"] + 12.0
        if i >= 113:  # temp frozen: identical value, no spread
            temp.update(mean=41.0, min=41.0, max=41.0, last=41.0, std=0.0)
        rows += [temp, flow]
    out = model.score(pl.DataFrame(rows))
    flagged = {
        int((r["window_start"] - T0).total_seconds() // 10): r["evidence"]
        for r in out.iter_rows(named=True)
        if r["is_anomaly"]
    }
    assert [i for i in flagged if i < 112] == list(range(105, 110))
    assert all("flow missing" in flagged[i] for i in range(105, 110))
    assert "temp spikes" in flagged[112]
    # stuck: after more unchanged windows than ever seen in normal operation (at least 6)
    assert [i for i in flagged if i > 112] == list(range(119, 120))
    assert "temp stuck at 41" in flagged[119]


def _order(rng, k: int, level: float, slope: float = 0.0, windows: int = 60) -> list[dict]:
    base = 10.0 + rng.gauss(0, 0.02) + level
    return [
        _window(
            k * 100 + w,
            "bore",
            base + rng.gauss(0, 0.005) + slope * w,
            work_order=f"WO-{k}",
        )
        for w in range(windows)
    ]


def test_order_offset_flags_a_bad_lot_not_a_normal_changeover() -> None:
    rng = random.Random(2)
    model = OrderOffsetModel(settle=6, min_orders=5)
    normal = [model.score(pl.DataFrame(_order(rng, k, 0.0))) for k in range(10)]
    assert not any(o["is_anomaly"].any() for o in normal)
    bad = model.score(pl.DataFrame(_order(rng, 10, 0.3)))
    assert bad["is_anomaly"].to_list() == [False] * 11 + [True] * 49
    assert "bore mean" in bad["evidence"][-1] and "earlier orders of P" in bad["evidence"][-1]
    # the bad order was not learned: the next normal order is normal again
    assert not model.score(pl.DataFrame(_order(rng, 11, 0.0)))["is_anomaly"].any()


def test_order_drift_flags_wear_within_an_order_not_a_changeover() -> None:
    rng = random.Random(3)
    model = OrderDriftModel(settle=6, baseline=12, min_orders=3)
    # changeovers between orders at different levels: never drift
    for k in range(6):
        out = model.score(pl.DataFrame(_order(rng, k, level=0.1 * (k % 3), windows=80)))
        assert not out["is_anomaly"].any()
    worn = model.score(pl.DataFrame(_order(rng, 6, 0.0, slope=0.002, windows=80)))
    first = worn["is_anomaly"].arg_max()
    assert worn["is_anomaly"][first]
    assert 18 < first < 50 and worn["is_anomaly"][first:].all()
    assert "drifted +" in worn["evidence"][first]


def test_a_tool_change_rebases_like_a_changeover() -> None:
    from floorsight.alerts.engine import MachineAlerting
    from floorsight.models.base import Maintenance

    def run(with_log: bool) -> set[str]:
        rng = random.Random(6)
        rows = []
        for i in range(1000):
            # the tool wears slowly (+0.3 over 900 windows), is changed at window 900 (machine
            # down 2 minutes) and the process comes back at its unworn level
            level = 40.0 + (0.3 * i / 900 if i < 900 else 0.0)
            if 900 <= i < 912:
                continue
            rows += [
                _window(
                    i,
                    "bore",
                    level + rng.gauss(0, 0.01),
                    std=0.03,
                    min=level - 0.05,
                    max=level + 0.05,
                    last=level,
                ),
                _window(i, "temp", 40 + rng.gauss(0, 0.1), std=0.3, min=39.5, max=40.5),
            ]
        change = T0 + timedelta(seconds=9000)
        log = [Maintenance("tool_change", change, change + timedelta(minutes=2))]
        engine = MachineAlerting()
        _, alerts = engine.update(pl.DataFrame(rows), None, log if with_log else None)
        return set() if alerts is None else set(alerts["cause"])

    assert "anomaly" in run(with_log=False)  # the return to the unworn level looks like a fault
    assert "anomaly" not in run(with_log=True)


def test_deviation_is_predicted_before_the_lab_and_learned_when_the_lab_reports() -> None:
    from floorsight.models.base import Context, LabResult
    from floorsight.models.deviation_monitor import DeviationModel

    rng = random.Random(7)
    specs = {("P", "q"): (19.0, 20.0, 21.0)}
    rows, labs = [], []
    for i in range(400):
        a = 10.0 + rng.gauss(0, 0.2) + (0.8 if i >= 350 else 0.0)  # the process shifts at 350
        q = 2 * a + rng.gauss(0, 0.05)
        rows += [_window(i, "a", a), _window(i, "q", q)]
        made = T0 + timedelta(seconds=10 * i + 5)
        # every part goes to the lab; its result is known 30 minutes later
        labs.append(LabResult(f"S{i}", "q", made, made + timedelta(minutes=30), q))
    model = DeviationModel(min_labels=30)
    out = model.score(pl.DataFrame(rows), Context("M", specs, labs))
    # a lab result is learned once a window ends after its available_at: at window j the parts
    # of windows up to j - 180 are known, so the 30th label (and the first prediction) is at 209
    first = out.filter(pl.col("score") > 0)["window_start"].min()
    assert first == T0 + timedelta(seconds=10 * 209)
    assert model._predictors[("P", "q")].labels == 399 - 179  # never a label from the future
    shifted = out.filter(pl.col("window_start") >= T0 + timedelta(seconds=3500))
    # the shift (q about 21.6, above USL 21) is flagged at once, 30 minutes before the lab says so
    assert shifted["is_anomaly"].mean() > 0.9
    before = out.filter(pl.col("window_start") < T0 + timedelta(seconds=3500))
    assert before["is_anomaly"].mean() < 0.05
    first_flag = json.loads(shifted["evidence"][0])["q"]
    assert first_flag["predicted"] > 21 and first_flag["low"] < first_flag["predicted"]
    assert "outside spec [19, 21]" in first_flag["note"]
