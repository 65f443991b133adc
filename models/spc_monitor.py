"""SPC inside the dataflow: each product's quality characteristics on I-MR charts with run rules.

A characteristic is a sensor with spec limits for the product running (from the ERP context, so
the set changes with the product). Each window's mean of it goes on that product's individuals
chart (:class:`~floorsight.models.spc.IndividualsChart`: a product's first ``phase1`` windows
on the machine are its phase I, so a changeover re-bases rather than alarms) and through the
run rules of the configured rule set, Nelson's eight or the four Western Electric rules
(``rules``). Characteristics listed in ``ewma`` or ``cusum`` also go on an EWMA or a tabular
CUSUM chart started from the I chart's phase I (center and σ), for small sustained shifts that
the I chart is slow to see.

Which rules page is a setting (``page``: rule number of the rule set -> severity, "info",
"warning" or "critical"); rules not listed are recorded in the evidence and the ``spc`` table,
for the SPC page, and flag nothing. By default none pages and no EWMA or CUSUM chart runs: the
rules assume independent points around one level, and window means are neither. On fault-free
simulated windows (``python benchmarks/spc_rates.py --seeds 31 32 --days 2 --machines 3``)
Nelson 1 fires at 34 % of the charted windows (0.27 % for independent points), Nelson 2, 5
and 6 and Western Electric 2..4 at 41..45 %, an EWMA chart (λ 0.2, L 3) at 66 %: a product's
work orders run at levels about 2 σ apart (setup, material) and its held per-cycle values and
slow wander make consecutive windows alike, so the σ of the moving range sees only part of the
variation. Only Nelson 3, 4 and 7 stay near their textbook rates (0.2 %, 0.4 %, 0.03 %). Paging
is for a plant whose windows are rational subgroups; the settings file says which rules page
at which severity (``[spc] page = {1 = "warning"}``).

One score row per window with a charted characteristic (model ``spc``): ``score`` the largest
|x - center| / (3 σ) (1 at a control limit, capped; 0 in phase I), ``is_anomaly`` a paging rule
or an EWMA/CUSUM signal, ``severity`` the highest severity among them (None without a flag),
``evidence`` every rule violated by name and the chart's limits. One ``spc`` row per charted
point: what the SPC page draws. Whether the parts are within spec is ``models.out_of_spec``'s.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar

from floorsight.models.base import AlertRule, Context, MachineModel, ModelOutput
from floorsight.models.machine import SEGMENT_KEYS, Segment
from floorsight.models.out_of_spec import measured_characteristics
from floorsight.models.spc import NELSON, CUSUMChart, EWMAChart, IndividualsChart, RunRules
from floorsight.models.tables import SCORES
from floorsight.storage import TableSpec

__all__ = ["SPC", "SpcModel"]

#: the Western Electric rules by their own number: the Nelson rule that checks each (its rule 4
#: is Nelson 2 with a run of eight, ``RunRules(western_electric=True)``) and its name
WESTERN_ELECTRIC = {
    1: (1, NELSON[1]),
    2: (5, NELSON[5]),
    3: (6, NELSON[6]),
    4: (2, "eight points in a row on one side of the center line"),
}

RULE_SETS = {"nelson": "Nelson", "western_electric": "Western Electric"}

#: alert severities, lowest first
SEVERITIES = ("info", "warning", "critical")

#: the charted points: what the SPC page draws (value, limits, spec limits, rules violated)
SPC = TableSpec(
    name="spc",
    schema=(
        # the segment's key columns, as in ``scores``
        *(column for column in SCORES.schema if column[0] in SEGMENT_KEYS),
        ("characteristic", "VARCHAR NOT NULL"),
        ("value", "DOUBLE NOT NULL"),
        ("center", "DOUBLE"),  # null in phase I
        ("lcl", "DOUBLE"),
        ("ucl", "DOUBLE"),
        ("lsl", "DOUBLE NOT NULL"),
        ("usl", "DOUBLE NOT NULL"),
        ("rules", "VARCHAR NOT NULL"),  # every rule and signal at this point, "" if none
        ("severity", "VARCHAR"),  # the highest paging severity, null if nothing pages
    ),
    key=("machine_id", "window_start", "work_order", "characteristic"),
)


@dataclass
class SpcModel(MachineModel):
    """Per machine: an I-MR chart per product and characteristic, run rules that page by
    setting, EWMA and CUSUM charts where configured.

    A shift of one σ after phase I: rule 1 (paging) does not see it, while the nine
    points in a row above the center (Nelson 2, recorded, not paging) are in the evidence; with
    an EWMA chart of the characteristic, its signal pages.

    >>> from datetime import UTC, datetime, timedelta
    >>> import random
    >>> rng = random.Random(6)
    >>> t0 = datetime(2026, 4, 6, tzinfo=UTC)
    >>> def window(i, bore):
    ...     start = t0 + timedelta(seconds=10 * i)
    ...     key = ("cnc-1", start, start + timedelta(seconds=10), "WO-1", "P-100", "LOT-1")
    ...     return Segment(key, {"bore_mm": {"mean": bore}})
    >>> specs = Context(specs={("P-100", "bore_mm"): (24.98, 25.0, 25.02)})
    >>> bores = [25.0 + rng.gauss(0, 0.002) for _ in range(40)]
    >>> bores += [25.002 + rng.gauss(0, 0.002) for _ in range(20)]
    >>> segments = [window(i, b) for i, b in enumerate(bores)]
    >>> plain = SpcModel(phase1=30, page={1: "warning"}).score_segments(segments, specs).scores
    >>> any(r["is_anomaly"] for r in plain), "Nelson 2" in plain[-1]["evidence"]
    (False, True)
    >>> model = SpcModel(phase1=30, page={1: "warning"}, ewma=["bore_mm"])
    >>> shift = model.score_segments(segments, specs).scores
    >>> first = next(i for i, r in enumerate(shift) if r["is_anomaly"])
    >>> first, shift[first]["severity"], shift[first]["evidence"].split("; ")[-1]
    (53, 'warning', 'EWMA 25.002 beyond [24.998, 25.002]')
    """

    name: ClassVar[str] = "spc"
    alert: ClassVar[AlertRule] = AlertRule("process out of statistical control (SPC run rules)")
    tables: ClassVar[tuple[TableSpec, ...]] = (SPC,)

    #: windows of a product that estimate its chart's center and σ
    phase1: int = 30
    #: "nelson" (eight rules) or "western_electric" (four)
    rules: str = "nelson"
    #: rule number (of the rule set) -> the severity it pages at; unlisted rules only record
    page: dict[int, str] = field(default_factory=dict)
    #: characteristics that also get an EWMA chart (λ, L) and a CUSUM chart (k, h in σ)
    ewma: list[str] = field(default_factory=list)
    cusum: list[str] = field(default_factory=list)
    #: the severity of an EWMA or CUSUM signal
    shift_severity: str = "warning"
    ewma_lambda: float = 0.2
    ewma_limit: float = 3.0
    cusum_k: float = 0.5
    cusum_h: float = 5.0
    #: (characteristic, product) -> its charts
    _charts: dict[tuple[str, str], IndividualsChart] = field(default_factory=dict)
    _ewma: dict[tuple[str, str], EWMAChart] = field(default_factory=dict)
    _cusum: dict[tuple[str, str], CUSUMChart] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.rules not in RULE_SETS:
            raise ValueError(f"rules must be one of {', '.join(RULE_SETS)}, not {self.rules!r}")
        count = 4 if self.rules == "western_electric" else 8
        for rule, severity in {**self.page, 0: self.shift_severity}.items():
            if not 0 <= int(rule) <= count:
                raise ValueError(f"{RULE_SETS[self.rules]} has no rule {rule}")
            if severity not in SEVERITIES:
                raise ValueError(f"severity {severity!r} is not one of {', '.join(SEVERITIES)}")

    def _new_chart(self) -> IndividualsChart:
        if self.rules == "western_electric":
            nelson = tuple(n for n, _ in WESTERN_ELECTRIC.values())
            rules = RunRules(rules=nelson, western_electric=True)
        else:
            rules = RunRules()
        return IndividualsChart(phase1=self.phase1, rules=rules)

    def score_segments(self, segments: list[Segment], context: Context) -> ModelOutput:
        """One score row per segment with a charted characteristic, and its ``spc`` rows."""
        specs = context.specs
        characteristics = context.characteristics
        # the rule set's own numbers and names, and which of them page at what rank
        if self.rules == "western_electric":
            named = {n: (we, name) for we, (n, name) in WESTERN_ELECTRIC.items()}
        else:
            named = {n: (n, name) for n, name in NELSON.items()}
        label = RULE_SETS[self.rules]
        page = {int(k): v for k, v in self.page.items()}
        rows, points = [], []
        for seg in segments:
            product = seg.product
            seen, measured = measured_characteristics(seg, characteristics, specs)
            if not seen:
                continue
            score, notes, severity = 0.0, [], None
            base = dict(zip(SEGMENT_KEYS, seg.key, strict=True))
            for sensor, x, limits in measured:
                key = (sensor, product)
                chart = self._charts.get(key)
                if chart is None:
                    chart = self._charts[key] = self._new_chart()
                charted = chart.ready
                violations = chart.update(x)
                hits, paged = [], []
                for v in violations:
                    number, name = named[v.rule]
                    level = page.get(number)
                    hits.append(f"{label} {number} ({name}{', ' + level if level else ''})")
                    if level:
                        paged.append(level)
                if charted:
                    if self._ewma or self._cusum:
                        hits += self._shifts(key, sensor, chart, x, paged)
                elif chart.ready:
                    self._start_shift_charts(key, sensor, chart)
                center = lcl = ucl = None
                if charted:
                    lcl, center, ucl = chart.limits
                    if chart.sigma:
                        score = max(score, min(1.0, abs(x - center) / (3 * chart.sigma)))
                level = max(paged, key=SEVERITIES.index) if paged else None
                if level is not None:
                    severity = max(level, severity or level, key=SEVERITIES.index)
                if hits:
                    notes.append(
                        f"{sensor} {x:.5g} [LCL {lcl:.5g}, UCL {ucl:.5g}]: " + "; ".join(hits)
                    )
                points.append(
                    {
                        **base,
                        "characteristic": sensor,
                        "value": x,
                        "center": center,
                        "lcl": lcl,
                        "ucl": ucl,
                        "lsl": limits[0],
                        "usl": limits[2],
                        "rules": "; ".join(hits),
                        "severity": level,
                    }
                )
            if not math.isfinite(score):
                score = 1.0
            row = seg.score_row(self.name, score, severity is not None, " | ".join(notes))
            row["severity"] = severity
            rows.append(row)
        return ModelOutput(rows, {SPC.name: points} if points else {})

    def _start_shift_charts(self, key: tuple[str, str], sensor: str, chart: IndividualsChart):
        """EWMA and CUSUM charts start where the I chart's phase I ends, from its limits."""
        if sensor in self.ewma:
            self._ewma[key] = EWMAChart(
                chart.center, chart.sigma, lam=self.ewma_lambda, L=self.ewma_limit
            )
        if sensor in self.cusum:
            self._cusum[key] = CUSUMChart(chart.center, chart.sigma, k=self.cusum_k, h=self.cusum_h)

    def _shifts(
        self, key: tuple[str, str], sensor: str, chart: IndividualsChart, x: float, paged: list
    ) -> list[str]:
        """The EWMA and CUSUM signals of this point, named; each pages at ``shift_severity``."""
        out = []
        ewma = self._ewma.get(key)
        if ewma is not None and ewma.update(x):
            half = ewma.width()
            out.append(f"EWMA {ewma.z:.5g} beyond [{ewma.mu0 - half:.5g}, {ewma.mu0 + half:.5g}]")
            paged.append(self.shift_severity)
        cusum = self._cusum.get(key)
        if cusum is not None and cusum.update(x):
            side, c = ("C+", cusum.upper) if cusum.upper >= cusum.lower else ("C-", cusum.lower)
            out.append(f"CUSUM {side} {c:.3g} beyond h {cusum.h * cusum.sigma:.3g}")
            paged.append(self.shift_severity)
        return out
