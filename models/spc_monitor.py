"""SPC inside the dataflow: each product's quality characteristics on I-MR charts, and spec checks.

For every characteristic that has spec limits for the product running (from the ERP context,
so they change with the product), each window's mean goes on that product's individuals chart
(:class:`~floorsight.models.spc.ProductCharts`: a product's first run is its phase I, so a
changeover re-bases rather than alarms) and is checked against LSL/USL. One score row per
window (model ``spc``):

- ``score``: the largest |x - center| / (3 sigma) over the characteristics (1 at the control
  limit), capped at 1; 0 while a chart is in phase I;
- ``is_anomaly``: a window mean **outside the spec limits** (the parts are being made out of
  spec: an alert, cause ``out_of_spec``);
- ``evidence``: every Nelson rule violated at this point, by number and name, with the value
  against its limits, and the spec verdict.

Run-rule violations are written for the SPC dashboard but raise no alert on their own: on
window means of a wandering process they fire too often to page anyone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import partial

import polars as pl

from floorsight.models.machine import Segment, score_frame, segments_of
from floorsight.models.spc import IndividualsChart, ProductCharts

#: (product, characteristic) -> (lsl, target, usl)
SpecLimits = dict[tuple[str, str], tuple[float, float, float]]


def spec_limits_dict(frame: pl.DataFrame) -> SpecLimits:
    """The ERP ``spec_limits`` table as a lookup."""
    return {
        (p, c): (lsl, target, usl)
        for p, c, lsl, target, usl in frame.select(
            "product", "characteristic", "lsl", "target", "usl"
        ).iter_rows()
    }


@dataclass
class SpcModel:
    """Per machine: I-MR charts and spec checks of the quality characteristics' window means."""

    phase1: int = 30
    name: str = "spc"
    charts: dict[str, ProductCharts] = field(default_factory=dict)

    def score(self, features: pl.DataFrame, specs: SpecLimits) -> pl.DataFrame:
        return score_frame(self.score_segments(segments_of(features), specs))

    def score_segments(self, segments: list[Segment], specs: SpecLimits) -> list[dict]:
        """One score row per segment with a characteristic of the product, in time order."""
        characteristics = {c for _, c in specs}
        rows = []
        for seg in segments:
            product = seg.product
            score, out_of_spec, notes, seen = 0.0, False, [], False
            for sensor, r in seg.rows.items():
                x = r["mean"]
                if x is None or sensor not in characteristics:
                    continue
                seen = True
                limits = specs.get((product, sensor))
                if limits is None:
                    continue
                lsl, _, usl = limits
                charts = self.charts.get(sensor)
                if charts is None:
                    charts = self.charts[sensor] = ProductCharts(
                        make=partial(IndividualsChart, phase1=self.phase1)
                    )
                violations = charts.update(product, x)
                chart = charts.charts[product]
                if chart.ready and chart.sigma:
                    score = max(score, min(1.0, abs(x - chart.center) / (3 * chart.sigma)))
                if violations:
                    lcl, _, ucl = chart.limits
                    rules = ", ".join(f"Nelson {v.rule} ({v.name})" for v in violations)
                    notes.append(f"{sensor} {x:.5g} [LCL {lcl:.5g}, UCL {ucl:.5g}]: {rules}")
                if not lsl <= x <= usl:
                    out_of_spec = True
                    notes.insert(0, f"{sensor} {x:.5g} out of spec [{lsl:.5g}, {usl:.5g}]")
            if not seen:
                continue
            if not math.isfinite(score):
                score = 1.0
            rows.append(seg.score_row(self.name, score, out_of_spec, "; ".join(notes)))
        return rows
