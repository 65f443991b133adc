"""Parts out of spec: a quality characteristic's window mean beyond the product's ERP limits.

A characteristic is a sensor with spec limits (LSL, target, USL) for the product running, from
the ERP context (:attr:`~floorsight.models.base.Context.specs`), so the limits change with the
product. One score row per window that measures a characteristic (model ``out_of_spec``): the
distance of its mean from the target in half tolerances, 1 at a spec limit, and a flag when a
mean is outside ``[lsl, usl]``: parts are being made out of spec, whatever the control chart
says (``models.spc_monitor`` judges statistical control, this model the customer's limits).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

from floorsight.models.base import AlertRule, Context, MachineModel, ModelOutput, SpecLimits
from floorsight.models.machine import Segment


@dataclass
class OutOfSpecModel(MachineModel):
    """Flags windows whose mean of a quality characteristic is outside its spec limits.

    Stateless: the spec limits come with every call.

    >>> from datetime import UTC, datetime, timedelta
    >>> import random
    >>> rng = random.Random(1)
    >>> t0 = datetime(2026, 4, 6, tzinfo=UTC)
    >>> def window(i, bore):
    ...     start = t0 + timedelta(seconds=10 * i)
    ...     key = ("cnc-1", start, start + timedelta(seconds=10), "WO-1", "P-100", "LOT-1")
    ...     return Segment(key, {"bore_mm": {"mean": bore}})
    >>> specs = {("P-100", "bore_mm"): (24.98, 25.0, 25.02)}
    >>> bores = [25.0 + rng.gauss(0, 0.003) for _ in range(3)] + [25.025]
    >>> out = OutOfSpecModel().score_segments(
    ...     [window(i, b) for i, b in enumerate(bores)], Context(specs=specs)
    ... )
    >>> [(round(r["score"], 2), r["is_anomaly"]) for r in out.scores]
    [(0.19, False), (0.22, False), (0.01, False), (1.0, True)]
    >>> out.scores[-1]["evidence"]
    'bore_mm 25.025 out of spec [24.98, 25.02]'
    """

    name: ClassVar[str] = "out_of_spec"
    alert: ClassVar[AlertRule] = AlertRule(
        "parts out of spec (window mean beyond the ERP spec limits)"
    )

    def score_segments(self, segments: list[Segment], context: Context) -> ModelOutput:
        """One score row per segment that measures a characteristic, in the given order."""
        specs = context.specs
        characteristics = context.characteristics
        rows = []
        for seg in segments:
            seen, measured = measured_characteristics(seg, characteristics, specs)
            score, notes = 0.0, []
            for sensor, x, (lsl, target, usl) in measured:
                score = max(score, half_tolerances(x, lsl, target, usl))
                if not lsl <= x <= usl:
                    notes.append(f"{sensor} {x:.5g} out of spec [{lsl:.5g}, {usl:.5g}]")
            if seen:
                rows.append(seg.score_row(self.name, score, bool(notes), "; ".join(notes)))
        return ModelOutput(rows)


def measured_characteristics(
    seg: Segment, characteristics: tuple[str, ...], specs: SpecLimits
) -> tuple[bool, list[tuple[str, float, tuple[float, float, float]]]]:
    """Whether the window measures a characteristic (of any product: its row is written even
    when the product running has no limits for it), and (characteristic, window mean, limits)
    of those the product has limits for, in the order of ``characteristics``."""
    rows, product = seg.rows, seg.product
    seen, out = False, []
    for c in characteristics:
        r = rows.get(c)
        if r is None:
            continue
        x = r["mean"]
        if x is None:
            continue
        seen = True
        limits = specs.get((product, c))
        if limits is not None:
            out.append((c, x, limits))
    return seen, out


def half_tolerances(x: float, lsl: float, target: float, usl: float) -> float:
    """|x - target| over the half tolerance on x's side of the target (an asymmetric spec has
    two), capped at 1: 0 on target, 1 at or beyond a spec limit.

    >>> half_tolerances(10.5, 9.0, 10.0, 11.0), half_tolerances(9.5, 8.5, 10.0, 11.0)
    (0.5, 0.3333333333333333)
    """
    side = usl - target if x >= target else target - lsl
    if side <= 0 or not math.isfinite(x):
        return 0.0 if x == target else 1.0
    return min(1.0, abs(x - target) / side)
