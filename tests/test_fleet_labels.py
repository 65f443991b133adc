"""The fleet label model: one model for all entities, predictions before learning, label delay,
the capped target, the conformal interval, pickling, classification."""

from __future__ import annotations

import math
import pickle
import random

import pytest

from floorsight.models.fleet import MODELS, FleetLabels, LabelSettings


def _engines(n: int, seed: int = 0, noise: float = 0.02):
    """Synthetic run-to-failure engines: a wear sensor rising to 1 at failure, a noisy sensor
    that carries nothing; rows interleaved by cycle as a fleet in service."""
    rng = random.Random(seed)
    lives = {f"e{i}": rng.randint(80, 160) for i in range(n)}
    rows = []
    for cycle in range(1, max(lives.values()) + 1):
        for engine, life in lives.items():
            if cycle <= life:
                x = {"wear": cycle / life + rng.gauss(0, noise), "noise": rng.gauss(0, 1)}
                rows.append((engine, x, float(life - cycle)))
    return rows


def _renewing_fleet(slots: int, n: int, seed: int, noise: float = 0.05):
    """A fleet in service: ``slots`` engines of mixed ages, each replaced by a new one at its
    failure, so the stream's mix of ages (and so of errors) is stationary."""
    rng = random.Random(seed)
    engines, count, rows = [], 0, []
    for _ in range(slots):
        life = rng.randint(80, 160)
        engines.append([f"e{count}", life, rng.randint(1, life)])
        count += 1
    while len(rows) < n:
        for engine in engines:
            name, life, cycle = engine
            x = {"wear": cycle / life + rng.gauss(0, noise), "noise": rng.gauss(0, 1)}
            rows.append((name, x, float(life - cycle)))
            if cycle == life:
                engine[:] = [f"e{count}", rng.randint(80, 160), 1]
                count += 1
            else:
                engine[2] += 1
    return rows


def _feed(model: FleetLabels, rows) -> list:
    return [model.step(engine, x, label) for engine, x, label in rows]


def test_a_new_entity_gets_a_finite_prediction_from_its_first_row() -> None:
    model = FleetLabels(["wear", "noise"], classify=False, label_delay=0)
    _feed(model, _engines(5))
    prediction, low, high = model.step("new", {"wear": 0.9, "noise": 0.0}, None)
    assert prediction is not None and math.isfinite(prediction)
    assert low <= prediction <= high
    young, _, _ = model.step("young", {"wear": 0.05, "noise": 0.0}, None)
    assert young > prediction  # a worn first row is predicted nearer failure than a fresh one


def test_nothing_is_predicted_before_any_label_was_learned() -> None:
    model = FleetLabels(["wear"], classify=False, label_delay=0)
    assert model.step("a", {"wear": 0.1}, 10.0) == (None, None, None)
    assert model.step("b", {"wear": 0.1}, None)[0] is not None


@pytest.mark.parametrize("model_name", MODELS)
def test_a_rows_prediction_does_not_depend_on_its_own_label(model_name: str) -> None:
    rows = _engines(3)[:200]
    settings = LabelSettings(model=model_name)
    a = FleetLabels(["wear", "noise"], classify=False, label_delay=0, settings=settings)
    b = FleetLabels(["wear", "noise"], classify=False, label_delay=0, settings=settings)
    _feed(a, rows[:150])
    _feed(b, rows[:150])
    engine, x, label = rows[150]
    assert a.step(engine, x, label) == b.step(engine, x, label + 1000.0)
    # the next row differs: the changed label was learned after the prediction (the nearest
    # neighbours of the next row need not include the changed one)
    engine, x, label = rows[151]
    if model_name != "knn":
        assert a.step(engine, x, label)[0] != b.step(engine, x, label)[0]


def test_a_label_is_learned_label_delay_rows_later_of_the_same_entity() -> None:
    model = FleetLabels(["wear"], classify=False, label_delay=3)
    for i in range(3):
        model.step("a", {"wear": i / 10}, float(i))
    model.step("b", {"wear": 0.5}, 1.0)  # another entity's rows do not release a's labels
    assert model.learned == 0
    model.step("a", {"wear": 0.3}, 3.0)
    assert model.learned == 1
    for i in range(4, 7):
        model.step("a", {"wear": i / 10}, float(i))
    assert model.learned == 4


def test_empty_labels_are_predicted_never_learned() -> None:
    model = FleetLabels(["wear"], classify=False, label_delay=0)
    _feed(model, _engines(2)[:50])
    learned = model.learned
    for i in range(20):
        assert model.step("a", {"wear": i / 20}, None)[0] is not None
        model.step("b", {"wear": i / 20}, float("nan"))
    assert model.learned == learned


def test_the_cap_bounds_what_is_learned_and_so_what_is_predicted() -> None:
    rows = _engines(6)
    capped = FleetLabels(["wear"], False, 0, LabelSettings(cap=50.0))
    free = FleetLabels(["wear"], False, 0)
    capped_out, free_out = _feed(capped, rows), _feed(free, rows)
    assert max(p for p, _, _ in capped_out if p is not None) <= 50.0
    assert max(p for p, _, _ in free_out if p is not None) > 100.0
    fresh = {"wear": 0.0}
    assert capped.step("n", fresh, None)[0] == pytest.approx(50.0, abs=10.0)


def test_the_interval_contains_the_prediction_and_covers_about_the_nominal_share() -> None:
    settings = LabelSettings(coverage=0.8, residual_window=500)
    model = FleetLabels(["wear", "noise"], False, 0, settings)
    rows = _renewing_fleet(20, 6000, seed=3)
    out = _feed(model, rows)
    tail = [(o, label) for o, (_, _, label) in zip(out, rows, strict=True)][3000:]
    assert all(lo <= p <= hi for (p, lo, hi), _ in tail)
    share = sum(lo <= y <= hi for (_, lo, hi), y in tail) / len(tail)
    assert 0.72 <= share <= 0.88


@pytest.mark.parametrize("model_name", MODELS)
def test_a_pickled_model_continues_identically(model_name: str) -> None:
    rows = _engines(4, seed=5)
    settings = LabelSettings(model=model_name, cap=100.0)
    model = FleetLabels(["wear", "noise"], False, 2, settings)
    _feed(model, rows[:250])
    copy = pickle.loads(pickle.dumps(model))
    assert _feed(model, rows[250:400]) == _feed(copy, rows[250:400])


def test_missing_and_non_finite_values_leave_the_feature_out() -> None:
    model = FleetLabels(["wear", "noise"], False, 0)
    _feed(model, _engines(2)[:80])
    for value in (None, float("nan"), float("inf")):
        prediction, _, _ = model.step("m", {"wear": 0.5, "noise": value}, None)
        assert math.isfinite(prediction)


def test_classify_predicts_the_probability_of_one() -> None:
    rng = random.Random(2)
    model = FleetLabels(["wear"], classify=True, label_delay=0)
    for i in range(2000):
        wear = rng.random()
        model.step(f"m{i % 10}", {"wear": wear}, int(wear > 0.5))
    high, _, _ = model.step("new1", {"wear": 0.95}, None)
    low, _, _ = model.step("new2", {"wear": 0.05}, None)
    assert 0.0 <= low < 0.5 < high <= 1.0


def test_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="unknown label model"):
        LabelSettings(model="lstm")
    with pytest.raises(ValueError, match="coverage"):
        LabelSettings(coverage=1.0)
    with pytest.raises(ValueError, match="label delay"):
        FleetLabels(["a"], False, -1)
