"""Deviation prediction in the stream: a part's quality predicted per window, before the lab.

For each quality characteristic with spec limits for the product running, a
:class:`~floorsight.models.deviation.DeviationPredictor` per (product, characteristic) predicts
the characteristic from the window's sensor means, with a split-conformal interval. The
machine's lab results (``Context.labs``, ERP ``lab_results``) are the labels: a sample is learned
once the event time has passed its ``available_at`` (hours after the part was made), with the
features of the window the part was made in, and its verdict is written against that window's
prediction (table ``deviation_checks``). Windows wait for their label at most
``max_label_delay``; older ones are forgotten, so the state stays bounded.

**What it reads** (``inline_gauge``): by default every sensor's window mean, the in-line
gauge of the characteristic among them (the CNC's bore gauge, the moulding machine's scale):
the lab is the reference measurement of the same parts, and the model learns how the gauge and
the process stand against it (a gauge's bias, a drift the process sensors show as well). With
``inline_gauge = False`` it reads only the *other* sensors, a soft sensor for a characteristic
that nothing on the line measures. On the simulator the other sensors move with the
characteristic only during some faults, each kind with its own ratio, so without the gauge
the predictions miss every out-of-spec lab result (docs/accuracy.md "Deviation prediction").

**When a window flags** (``alert_on``): ``"interval"`` (the default) when the whole prediction
interval lies beyond a spec limit (``high < lsl`` or ``low > usl``), ``"value"`` when the
predicted value does (its interval then crosses the limit). The interval is the model's own
measure of how far its predictions miss; a flag on the value alone fires on every window
whose prediction error happens to reach the limit, so it buys recall with precision, and the
lab's verdicts (``benchmarks/deviation_lead.py``, docs/accuracy.md "Deviation prediction") are
what the default was chosen on. A window whose interval is still unbounded never flags.

**Fewer labels** (``min_labels``, 10 by default): the predictor is per machine, product and
characteristic and predicts from its 10th lab result on, with the honest small-sample
split-conformal interval (the ``ceil(0.9 (n + 1))``-th smallest of ``n`` residuals: unbounded
below 9 residuals, wide while the regression is young). Pooling across machines of a product
was weighed and not taken: the machines of a product sit in different shards of the score
step, so a shared predictor would make a machine's predictions depend on which machines share
its worker and in which order they are scored (a recovery with another worker count would
predict differently), and a machine's snapshot would no longer hold its model. A product-level
prior shrunk toward each machine needs that same shared object to learn the prior. A small
``min_labels`` with an interval that is wide while labels are few keeps every machine's model
its own and still lets nearly every machine × product predict within a simulated day.

Score rows (model ``deviation``): ``score`` is the predicted distance from target in units of
the half tolerance (capped at 1, so 1 means at or beyond a spec limit), ``is_anomaly`` the flag
above, ``evidence`` a JSON object by characteristic: ``predicted``, ``low``, ``high`` (the
interval; null while unbounded), ``lsl``, ``usl``, and a readable ``note`` when flagged.
"""

from __future__ import annotations

import bisect
import json
import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import ClassVar

from floorsight.models.base import AlertRule, Context, LabResult, MachineModel, ModelOutput
from floorsight.models.deviation import DeviationPredictor
from floorsight.models.machine import Segment
from floorsight.storage import TableSpec

#: the lab's verdict against each predicted window, one row per lab result of such a window
DEVIATION_CHECKS = TableSpec(
    "deviation_checks",
    (
        ("machine_id", "VARCHAR"),
        ("characteristic", "VARCHAR"),
        ("sample_id", "VARCHAR"),
        ("part_made_at", "TIMESTAMPTZ"),
        ("window_start", "TIMESTAMPTZ"),
        ("predicted", "DOUBLE"),
        ("low", "DOUBLE"),
        ("high", "DOUBLE"),
        ("lsl", "DOUBLE"),
        ("usl", "DOUBLE"),
        ("predicted_out", "BOOLEAN"),
        ("lab_value", "DOUBLE"),
        ("lab_out", "BOOLEAN"),
        ("available_at", "TIMESTAMPTZ"),
        ("hours_ahead", "DOUBLE"),
    ),
    ("machine_id", "sample_id", "characteristic"),
)


@dataclass(slots=True)
class _Waiting:
    """A window waiting for its lab results: what it was predicted from and what it predicted."""

    machine_id: str
    product: str
    #: sensor -> window mean; a characteristic's features are the others (taken when learned)
    means: dict[str, float]
    #: when the prediction was made (the window's end)
    made_at: datetime
    #: a faulty measurement (``Context.quarantine``): never flags, is checked against the lab,
    #: and is not learned
    quarantined: bool
    #: characteristic -> (predicted, low, high, lsl, usl, flagged)
    predictions: dict[str, tuple]


@dataclass
class DeviationModel(MachineModel):
    """A machine's quality characteristics predicted per window, checked by the lab later."""

    name: ClassVar[str] = "deviation"
    alert: ClassVar[AlertRule | None] = AlertRule(
        "quality predicted out of spec before the lab result (predicted value and interval in "
        "the evidence)"
    )
    tables: ClassVar[tuple[TableSpec, ...]] = (DEVIATION_CHECKS,)

    max_label_delay: timedelta = timedelta(hours=8)
    min_labels: int = 10
    coverage: float = 0.9
    alert_on: str = "interval"
    learning_rate: float = 0.02
    inline_gauge: bool = True
    _predictors: dict[tuple[str, str], DeviationPredictor] = field(default_factory=dict)
    _waiting: dict[datetime, _Waiting] = field(default_factory=dict)
    _starts: list[datetime] = field(default_factory=list)
    _labels_seen: int = 0  # index into the machine's lab results (ordered by available_at)
    _window: timedelta | None = None
    #: the lab results list last read (its id and length): a reload brings a new one, which can
    #: hold results that sort before those already seen (booked late by the lab)
    _labs_version: tuple[int, int] = (0, 0)
    #: (sample_id, characteristic) -> part_made_at of the results already taken, while their
    #: windows may still wait: a rescan after a reload takes none of them twice
    _taken: dict[tuple[str, str], datetime] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.alert_on not in ("interval", "value"):
            raise ValueError(f"alert_on is 'interval' or 'value', not {self.alert_on!r}")

    def score_segments(self, segments: list[Segment], context: Context) -> ModelOutput:
        """One score row per segment with a characteristic of the product, in time order; a
        ``deviation_checks`` row per lab result that arrived for a predicted window."""
        specs, labs = context.specs, context.labs
        characteristics = set(context.characteristics)
        rows: list[dict] = []
        checks: list[dict] = []
        for seg in segments:
            means = {s: r["mean"] for s, r in seg.rows.items() if r["mean"] is not None}
            if not means:
                continue
            self._window = seg.end - seg.start
            self._learn_labels(labs, seg.end, checks)
            product = seg.product
            targets = [c for c in means if c in characteristics and (product, c) in specs]
            if not targets:
                continue
            waiting = _Waiting(
                seg.key[0], product, means, seg.end, seg.start in context.quarantine, {}
            )
            if seg.start not in self._waiting:
                bisect.insort(self._starts, seg.start)
            self._waiting[seg.start] = waiting
            score, flagged, detail = 0.0, False, {}
            for c in targets:
                lsl, target, usl = specs[(product, c)]
                predictor = self._predictors.get((product, c))
                if predictor is None:
                    predictor = self._predictors[(product, c)] = DeviationPredictor(
                        coverage=self.coverage,
                        min_labels=self.min_labels,
                        learning_rate=self.learning_rate,
                    )
                pred = predictor.predict_only(self._features(means, c), lsl, usl)
                if pred is None:
                    continue  # no prediction before min_labels lab results
                # a window with a faulty measurement is predicted from it: it does not flag
                bounded = math.isfinite(pred.high - pred.low) and not waiting.quarantined
                if self.alert_on == "interval":
                    out = bounded and (pred.high < lsl or pred.low > usl)
                else:
                    out = bounded and pred.out_of_spec
                waiting.predictions[c] = (pred.value, pred.low, pred.high, lsl, usl, out)
                half = (usl - lsl) / 2 or 1.0
                score = max(score, min(1.0, abs(pred.value - target) / half))
                flagged |= out
                finite = math.isfinite(pred.high - pred.low)
                low, high = (pred.low, pred.high) if finite else (None, None)
                detail[c] = {"predicted": pred.value, "low": low, "high": high}
                detail[c] |= {"lsl": lsl, "usl": usl}
                if out:
                    detail[c]["note"] = (
                        f"{c} predicted {pred.value:.5g} [{pred.low:.5g}, {pred.high:.5g}]"
                        f" outside spec [{lsl:.5g}, {usl:.5g}]"
                    )
            rows.append(
                seg.score_row(self.name, score, flagged, json.dumps(detail) if detail else "")
            )
            self._forget(seg.start - self.max_label_delay)
        # the results of parts whose windows are gone cannot be taken again anyway
        oldest = self._starts[0] if self._starts else None
        self._taken = {k: t for k, t in self._taken.items() if oldest is not None and t >= oldest}
        return ModelOutput(rows, {DEVIATION_CHECKS.name: checks} if checks else {})

    def _learn_labels(self, labs: list[LabResult], now: datetime, checks: list[dict]) -> None:
        if (id(labs), len(labs)) != self._labs_version:
            self._labs_version = (id(labs), len(labs))
            # a new version of the table: look again from the first result whose part's window
            # may still wait (a result is available after its part was made)
            oldest = self._starts[0] if self._starts else now
            self._labels_seen = bisect.bisect_left(labs, oldest, key=lambda r: r.available_at)
        while self._labels_seen < len(labs) and labs[self._labels_seen].available_at <= now:
            lab = labs[self._labels_seen]
            self._labels_seen += 1
            key = (lab.sample_id, lab.characteristic)
            if key in self._taken:
                continue
            self._taken[key] = lab.part_made_at
            start = self._window_of(lab.part_made_at)
            if start is None:
                continue
            waiting = self._waiting[start]
            c = lab.characteristic
            predictor = self._predictors.get((waiting.product, c))
            if c not in waiting.means or predictor is None:
                continue
            made = waiting.predictions.get(c)
            if made is not None:
                checks.append(_check(waiting, start, lab, made))
            if not waiting.quarantined:
                predictor.learn(self._features(waiting.means, c), lab.value)

    def _features(self, means: dict[str, float], characteristic: str) -> dict[str, float]:
        """What a characteristic is predicted from: the other sensors' window means, and with
        ``inline_gauge`` its own in-line measurement's too (never a lab value)."""
        if self.inline_gauge:
            return means
        return {k: v for k, v in means.items() if k != characteristic}

    def _window_of(self, t: datetime) -> datetime | None:
        i = bisect.bisect_right(self._starts, t) - 1
        if i < 0 or self._window is None or t >= self._starts[i] + self._window:
            return None
        return self._starts[i]

    def _forget(self, before: datetime) -> None:
        k = bisect.bisect_left(self._starts, before)
        if not k:
            return
        for start in self._starts[:k]:
            self._waiting.pop(start, None)
        del self._starts[:k]

    def metrics(self) -> dict[str, float]:
        """Predictors that predict (enough lab results) and the windows waiting for a label."""
        ready = sum(p.labels >= p.min_labels for p in self._predictors.values())
        return {"deviation.predicting": float(ready), "deviation.waiting": float(len(self._starts))}


def _check(waiting: _Waiting, start: datetime, lab: LabResult, made: tuple) -> dict:
    """The ``deviation_checks`` row of one lab result against its window's prediction."""
    predicted, low, high, lsl, usl, out = made
    bounded = math.isfinite(high - low)
    return {
        "machine_id": waiting.machine_id,
        "characteristic": lab.characteristic,
        "sample_id": lab.sample_id,
        "part_made_at": lab.part_made_at,
        "window_start": start,
        "predicted": predicted,
        "low": low if bounded else None,
        "high": high if bounded else None,
        "lsl": lsl,
        "usl": usl,
        "predicted_out": out,
        "lab_value": lab.value,
        "lab_out": not lsl <= lab.value <= usl,
        "available_at": lab.available_at,
        "hours_ahead": (lab.available_at - waiting.made_at).total_seconds() / 3600,
    }
