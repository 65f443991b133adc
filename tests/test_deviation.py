"""Deviation prediction with known answers: a linear process, delayed labels, interval coverage."""

from __future__ import annotations

import numpy as np

from floorsight.models.deviation import DeviationPredictor


def _part(rng, shift: float = 0.0) -> tuple[dict[str, float], float]:
    a, b = rng.normal(10, 0.3), rng.normal(5, 0.2)
    return {"a": a, "b": b}, 2 * a - b + shift + rng.normal(0, 0.1)


def test_predicts_before_the_label_and_learns_only_known_labels() -> None:
    rng = np.random.default_rng(1)
    p = DeviationPredictor(min_labels=30)
    x, _ = _part(rng)
    assert p.predict("s0", x, 0, 100) is None  # nothing learned yet
    # labels arrive 20 parts late: prediction for part i uses labels up to i - 20 only
    delay, history = 20, []
    inside, errors = 0, []
    for i in range(1, 2000):
        x, y = _part(rng)
        pred = p.predict(f"s{i}", x, lsl=13.0, usl=17.0)
        history.append((f"s{i}", y))
        if len(history) > delay:
            sid, label = history.pop(0)
            p.label(sid, label)
        if pred is not None and i > 1000:
            errors.append(pred.value - y)
            inside += pred.low <= y <= pred.high
    assert np.mean(np.abs(errors)) < 0.3
    assert 0.8 < inside / len(errors) < 0.98  # the 90 % interval covers about 90 %
    assert p.label("unknown", 1.0) is None  # a label for a part never predicted is ignored


def test_a_process_shift_is_flagged_out_of_spec_before_the_lab_says_so() -> None:
    rng = np.random.default_rng(2)
    p = DeviationPredictor(min_labels=30)
    for i in range(1500):
        x, y = _part(rng)
        p.predict(f"s{i}", x, 13.0, 17.0)
        p.label(f"s{i}", y)
    # input shifted so the process makes parts around 18 (USL 17): flagged on the inputs alone
    flags = []
    for i in range(50):
        x = {"a": rng.normal(11.5, 0.2), "b": rng.normal(5, 0.2)}
        pred = p.predict(f"t{i}", x, 13.0, 17.0)
        flags.append(pred.out_of_spec)
    assert np.mean(flags) > 0.8
    normal = [p.predict(f"u{i}", _part(rng)[0], 13.0, 17.0).out_of_spec for i in range(200)]
    assert np.mean(normal) < 0.1
