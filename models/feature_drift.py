"""Has the distribution of a product's features moved from the product's reference on this machine?

Distribution drift, per machine, each product against itself (a changeover to another product
switches to that product's detectors and reference, so it is never drift):

- **Univariate**: one River drift detector per product × feature (a feature is one window
  statistic of one sensor, ``bore_diameter_mm.mean``): ADWIN (``detector="adwin"``) or KSWIN
  (``"kswin"``), fed the mean of every ``block`` complete windows of that product.
- **Multivariate**: the product's first ``reference_windows`` complete windows on the machine
  are its reference, kept as a quantile sketch (``bins`` quantile bins and their shares per
  feature); the current distribution is the last ``window`` windows (their bin counts, updated
  as windows come and go). Every ``every`` windows the PSI of each feature against its
  reference is computed (drifted: PSI > ``psi_limit``), and their sum, Σ PSI, against
  ``multivariate_k × psi_limit``.

Each computation and each detector firing is a row of the ``drift`` table (:data:`DRIFT`);
the drift page draws those rows. The score of a window is the product's latest Σ PSI over its
limit (capped at 1), flagged while the product has drifted. No alert: the
``drift`` model (work-order baseline, tool wear) and the anomaly model alert on the faults this
one sees; this one says since when, and in which features, the product no longer looks like its
reference.

Why the defaults. Window means of a real process are not independent draws: on the simulated
plant each sensor wanders slowly (a sine of 1-2 h period, several times the window noise) and
every work order's material lot shifts the quality characteristic. Measured on fault-free
simulated days (``python benchmarks/feature_drift.py``; 3 machines, 2 days, seeds 1-3, 10 s
windows):

- ADWIN at δ = 0.002 fed every window fires about 1.8 times per 1000 windows of each feature
  (15 times a day per feature): the wander is a real change of the mean, significant with
  thousands of windows, only not a fault. Smaller δ barely helps (the evidence grows with
  the window count). What keeps firings of in-control data from counting as drift is a
  practical threshold: a firing is drift only when the level after it (ADWIN's estimate of the
  new sub-window) lies more than ``min_shift`` spreads from the product's reference mean,
  the spread being the standard deviation of the reference's window means, wander included.
  A wander cannot move a level past its own amplitude (≈ 1.4 spreads); tool wear and process
  upsets move it by 8-20 spreads. Feeding block means of ``block`` windows cuts the cost by
  that factor and ADWIN's firings on the wander too.
- PSI: a reference of 200 windows (33 min) holds a slice of one wander cycle, and 100 recent
  windows another slice, so the two distributions differ though nothing is wrong: that is the
  PSI of 4.25 the page showed on fault-free hours (and the page's reference included the
  product's first, short windows of each changeover). The reference here spans
  ``reference_windows`` = 6 h of complete windows (several wander cycles and work orders) and
  the current ``window`` = 2 h (at least one cycle).

The measured rates are in ``docs/accuracy.md`` with the command behind them.

Examples
--------
>>> import random
>>> from datetime import UTC, datetime, timedelta
>>> from floorsight.models.base import Context
>>> from floorsight.models.machine import Segment
>>> rng = random.Random(7)
>>> t0 = datetime(2026, 1, 1, tzinfo=UTC)
>>> def window(i, level):
...     start = t0 + timedelta(seconds=10 * i)
...     key = ("M1", start, start + timedelta(seconds=10), "WO-1", "P", "L")
...     row = {"n": 10, "mean": level + rng.gauss(0, 1), "std": 1.0, "min": 0, "max": 0,
...            "last": 0}
...     return Segment(key, {"temp": row}, full={"temp": row})
>>> model = FeatureDriftModel(reference_windows=200, window=100, every=20, block=5)
>>> out = model.score_segments([window(i, 20.0) for i in range(600)], Context("M1"))
>>> any(r["is_anomaly"] for r in out.scores)
False
>>> out = model.score_segments([window(i, 25.0) for i in range(600, 800)], Context("M1"))
>>> first = next(r for r in out.tables["drift"] if r["drifted"])
>>> first["feature"], first["detector"]
('temp.mean', 'adwin')
>>> out.scores[-1]["is_anomaly"], out.scores[-1]["score"]
(True, 1.0)
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections import deque
from dataclasses import dataclass, field
from typing import ClassVar

from river import drift

from floorsight.models.base import Context, MachineModel, ModelOutput
from floorsight.models.drift import psi_shares, psi_sketch
from floorsight.models.machine import Segment
from floorsight.storage import TableSpec

#: block means whose mean is the level a detector firing is judged by
_RECENT_BLOCKS = 3

#: feature name of the row that combines every feature of a product
MULTIVARIATE = "multivariate"

DRIFT = TableSpec(
    name="drift",
    schema=(
        ("machine_id", "VARCHAR NOT NULL"),
        ("product", "VARCHAR NOT NULL"),
        ("feature", "VARCHAR NOT NULL"),
        ("window_end", "TIMESTAMPTZ NOT NULL"),
        ("detector", "VARCHAR NOT NULL"),
        ("statistic", "DOUBLE NOT NULL"),
        ("limit", "DOUBLE NOT NULL"),
        ("drifted", "BOOLEAN NOT NULL"),
        ("reference_windows", "INTEGER NOT NULL"),
        ("current_windows", "INTEGER NOT NULL"),
    ),
    key=("machine_id", "product", "feature", "window_end", "detector"),
)


@dataclass
class _Feature:
    """One feature of one product: its reference, its current window, its detector."""

    detector: object
    #: reference values while the reference fills; None once it is a sketch
    reference: list[float] | None = field(default_factory=list)
    edges: list[float] = field(default_factory=list)
    shares: list[float] = field(default_factory=list)
    ref_mean: float = 0.0
    ref_sd: float = 0.0
    #: bin of each current window, and the count per bin
    current: deque = field(default_factory=deque)
    counts: list[int] = field(default_factory=list)
    block_sum: float = 0.0
    block_n: int = 0
    #: the newest block means, in reference spreads from the reference mean
    recent: deque = field(default_factory=lambda: deque(maxlen=_RECENT_BLOCKS))


@dataclass
class _Product:
    features: dict[str, _Feature] = field(default_factory=dict)
    windows: int = 0
    score: float = 0.0
    drifted: bool = False
    evidence: str = ""


@dataclass
class FeatureDriftModel(MachineModel):
    """Per machine: drift of each product's features from the product's reference."""

    name: ClassVar[str] = "feature_drift"
    tables: ClassVar[tuple[TableSpec, ...]] = (DRIFT,)
    needs_coverage: ClassVar[bool] = True

    #: window statistics watched per sensor
    statistics: tuple[str, ...] = ("mean",)
    #: "adwin" or "kswin"
    detector: str = "adwin"
    #: windows averaged into one value of the detector
    block: int = 30
    delta: float = 0.002
    clock: int = 1
    kswin_alpha: float = 0.005
    kswin_window: int = 100
    kswin_stat: int = 30
    seed: int = 0
    #: a firing is drift when the new level is this many reference spreads from the reference
    min_shift: float = 4.0
    reference_windows: int = 4320
    window: int = 2160
    every: int = 360
    bins: int = 10
    psi_limit: float = 1.5
    multivariate_k: float = 2.0
    _products: dict[str, _Product] = field(default_factory=dict)

    def _make_detector(self) -> object:
        if self.detector == "kswin":
            return drift.KSWIN(
                alpha=self.kswin_alpha,
                window_size=self.kswin_window,
                stat_size=self.kswin_stat,
                seed=self.seed,
            )
        if self.detector == "adwin":
            return drift.ADWIN(delta=self.delta, clock=self.clock)
        raise ValueError(f"detector must be 'adwin' or 'kswin', got {self.detector!r}")

    def score_segments(self, segments: list[Segment], context: Context) -> ModelOutput:
        """One score row per segment with a complete window, in time order; ``drift`` rows at
        each computation and each detector firing."""
        scores: list[dict] = []
        rows: list[dict] = []
        for seg in segments:
            full = seg.full if seg.full is not None else seg.rows
            if not full or seg.product is None:
                continue
            product = self._products.get(seg.product)
            if product is None:
                product = self._products[seg.product] = _Product()
            self._learn(seg, product, full, rows)
            scores.append(
                seg.score_row(self.name, product.score, product.drifted, product.evidence)
            )
        return ModelOutput(scores, {DRIFT.name: rows} if rows else {})

    def _learn(self, seg: Segment, product: _Product, full: dict, rows: list[dict]) -> None:
        product.windows += 1
        features = product.features
        for sensor, r in full.items():
            for stat in self.statistics:
                x = r[stat]
                if x is None or not math.isfinite(x):
                    continue
                name = f"{sensor}.{stat}"
                f = features.get(name)
                if f is None:
                    f = features[name] = _Feature(self._make_detector())
                if f.reference is not None:
                    f.reference.append(x)
                    if len(f.reference) >= self.reference_windows:
                        self._close_reference(f)
                else:
                    b = bisect_right(f.edges, x)
                    f.current.append(b)
                    f.counts[b] += 1
                    if len(f.current) > self.window:
                        f.counts[f.current.popleft()] -= 1
                    f.block_sum += x
                    f.block_n += 1
                    if f.block_n >= self.block:
                        self._feed(seg, name, f, rows)
        if product.windows % self.every == 0:
            self._statistics(seg, product, rows)

    def _close_reference(self, f: _Feature) -> None:
        ref = f.reference
        f.edges, f.shares = psi_sketch(ref, self.bins)
        f.ref_mean = sum(ref) / len(ref)
        sd = math.sqrt(sum((x - f.ref_mean) ** 2 for x in ref) / max(len(ref) - 1, 1))
        # a constant reference (a held setpoint): any move is many spreads
        f.ref_sd = sd if sd > 0 else max(abs(f.ref_mean), 1.0) * 1e-9
        f.counts = [0] * self.bins
        f.reference = None

    def _feed(self, seg: Segment, name: str, f: _Feature, rows: list[dict]) -> None:
        """One block mean, in reference spreads from the reference mean, into the detector;
        a firing is drift when the newest blocks' level is ``min_shift`` spreads away."""
        z = (f.block_sum / f.block_n - f.ref_mean) / f.ref_sd
        f.block_sum, f.block_n = 0.0, 0
        f.recent.append(z)
        f.detector.update(z)
        if f.detector.drift_detected:
            level = abs(sum(f.recent) / len(f.recent))
            rows.append(self._row(seg, name, self.detector, level, self.min_shift, f))

    def _statistics(self, seg: Segment, product: _Product, rows: list[dict]) -> None:
        total, drifted, judged = 0.0, [], 0
        for name, f in product.features.items():
            if f.reference is not None or len(f.current) < self.window:
                continue
            value = psi_shares(f.shares, [c / len(f.current) for c in f.counts])
            judged += 1
            total += value
            rows.append(self._row(seg, name, "psi", value, self.psi_limit, f))
            if value > self.psi_limit:
                drifted.append((value, name))
        if not judged:
            return
        limit = self.multivariate_k * self.psi_limit
        rows.append(
            {
                **self._row(seg, MULTIVARIATE, "multivariate", total, limit, None),
                "current_windows": self.window,
            }
        )
        product.score = min(1.0, total / limit)
        product.drifted = total > limit or bool(drifted)
        product.evidence = ""
        if product.drifted:
            worst = ", ".join(f"{n} {v:.2f}" for v, n in sorted(drifted, reverse=True)[:3])
            product.evidence = (
                f"drift from the product's reference: Σ PSI {total:.2f} (limit {limit:.2f})"
                + (f"; PSI {worst}" if worst else "")
            )

    def _row(
        self, seg: Segment, feature: str, detector: str, statistic: float, limit: float, f
    ) -> dict:
        return {
            "machine_id": seg.key[0],
            "product": seg.product,
            "feature": feature,
            "window_end": seg.end,
            "detector": detector,
            "statistic": statistic,
            "limit": limit,
            "drifted": statistic > limit,
            "reference_windows": self.reference_windows,
            "current_windows": len(f.current) if f is not None else 0,
        }
