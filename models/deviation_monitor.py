"""Deviation prediction in the dataflow: quality per window before the lab; lab results as labels.

For each quality characteristic with spec limits for the product running, a
:class:`~floorsight.models.deviation.DeviationPredictor` per (product, characteristic) predicts
the characteristic from the window's process features (the window means of the *other*
sensors: the prediction must not read the answer), with a split-conformal interval, and flags
the window **predicted out of spec**. The machine's lab results (ERP ``lab_results``) are the
labels: a sample is learned once the event time has passed its ``available_at`` (hours after
the part was made), with the features of the window the part was made in. Windows wait for
their label at most ``max_label_delay``; older ones are dropped, so the state stays bounded.

Score rows (model ``deviation``): ``score`` is the predicted distance from target in units of
the half tolerance (capped at 1, so 1 means at or beyond a spec limit), ``is_anomaly`` the
predicted-out-of-spec flag, ``evidence`` a JSON object per characteristic: ``predicted``,
``low``, ``high`` (the interval), ``lsl``, ``usl``, and a readable ``note`` when out of spec.
"""

from __future__ import annotations

import bisect
import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import polars as pl

from floorsight.models.deviation import DeviationPredictor
from floorsight.models.machine import Segment, score_frame, segments_of
from floorsight.models.spc_monitor import SpecLimits


@dataclass(frozen=True, slots=True)
class LabResult:
    sample_id: str
    characteristic: str
    part_made_at: datetime
    available_at: datetime
    value: float


def lab_results_by_machine(frame: pl.DataFrame | None) -> dict[str, list[LabResult]]:
    """The ERP ``lab_results`` table by machine, each list ordered by ``available_at``."""
    out: dict[str, list[LabResult]] = {}
    if frame is None or frame.height == 0:
        return out
    cols = ("machine_id", "sample_id", "characteristic", "part_made_at", "available_at", "value")
    for machine_id, *rest in frame.sort("available_at").select(cols).iter_rows():
        out.setdefault(machine_id, []).append(LabResult(*rest))
    return out


@dataclass
class DeviationModel:
    max_label_delay: timedelta = timedelta(hours=8)
    min_labels: int = 30
    name: str = "deviation"
    predictors: dict[tuple[str, str], DeviationPredictor] = field(default_factory=dict)
    #: windows waiting for a lab label: window_start -> (product, {sensor: window mean}); the
    #: features of a characteristic are the means of the other sensors (taken when learned)
    _waiting: dict[datetime, tuple[str, dict[str, float]]] = field(default_factory=dict)
    _starts: list[datetime] = field(default_factory=list)
    _labels_seen: int = 0  # index into the machine's lab results (ordered by available_at)
    _window: timedelta | None = None
    #: the lab results list last read (its id and length): a reload brings a new one, which can
    #: hold results that sort before those already seen (booked late by the lab)
    _labs_version: tuple[int, int] = (0, 0)
    #: (sample_id, characteristic) -> part_made_at of the results already taken, while their
    #: windows may still wait: a rescan after a reload takes none of them twice
    _taken: dict[tuple[str, str], datetime] | None = None

    def score(
        self, features: pl.DataFrame, specs: SpecLimits, labs: list[LabResult]
    ) -> pl.DataFrame:
        return score_frame(self.score_segments(segments_of(features), specs, labs))

    def score_segments(
        self, segments: list[Segment], specs: SpecLimits, labs: list[LabResult]
    ) -> list[dict]:
        """One score row per segment with a characteristic of the product, in time order."""
        characteristics = {c for _, c in specs}
        rows = []
        for seg in segments:
            means = {s: r["mean"] for s, r in seg.rows.items() if r["mean"] is not None}
            if not means:
                continue
            self._window = seg.end - seg.start
            self._learn_labels(labs, seg.end)
            product = seg.product
            targets = [c for c in means if c in characteristics and (product, c) in specs]
            if not targets:
                continue
            self._waiting[seg.start] = (product, means)
            bisect.insort(self._starts, seg.start)
            score, flagged, detail = 0.0, False, {}
            for c in targets:
                lsl, target, usl = specs[(product, c)]
                predictor = self.predictors.get((product, c))
                if predictor is None:
                    predictor = DeviationPredictor(min_labels=self.min_labels)
                    self.predictors[(product, c)] = predictor
                if predictor.labels < predictor.min_labels:
                    continue  # no prediction before enough lab results (see predict_only)
                pred = predictor.predict_only(_without(means, c), lsl, usl)
                if pred is None:
                    continue
                half = (usl - lsl) / 2 or 1.0
                score = max(score, min(1.0, abs(pred.value - target) / half))
                flagged |= pred.out_of_spec
                detail[c] = {
                    "predicted": pred.value,
                    "low": pred.low,
                    "high": pred.high,
                    "lsl": lsl,
                    "usl": usl,
                }
                if pred.out_of_spec:
                    detail[c]["note"] = (
                        f"{c} predicted {pred.value:.5g} [{pred.low:.5g}, {pred.high:.5g}]"
                        f" outside spec [{lsl:.5g}, {usl:.5g}]"
                    )
            rows.append(
                seg.score_row(self.name, score, flagged, json.dumps(detail) if detail else "")
            )
            self._forget(seg.start - self.max_label_delay)
        return rows

    def _learn_labels(self, labs: list[LabResult], now: datetime) -> None:
        if self._taken is None:
            self._taken = {}
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
            product, means = self._waiting[start]
            predictor = self.predictors.get((product, lab.characteristic))
            if lab.characteristic in means and predictor is not None:
                predictor.learn(_without(means, lab.characteristic), lab.value)

    def _window_of(self, t: datetime) -> datetime | None:
        i = bisect.bisect_right(self._starts, t) - 1
        if i < 0 or self._window is None or t >= self._starts[i] + self._window:
            return None
        return self._starts[i]

    def _forget(self, before: datetime) -> None:
        k = bisect.bisect_left(self._starts, before)
        for start in self._starts[:k]:
            self._waiting.pop(start, None)
        del self._starts[:k]
        if self._taken and k:
            self._taken = {key: t for key, t in self._taken.items() if t >= before}


def _without(means: dict[str, float], characteristic: str) -> dict[str, float]:
    """The process features of ``characteristic``: the other sensors' means (never its own)."""
    return {k: v for k, v in means.items() if k != characteristic}
