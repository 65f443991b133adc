"""The MLflow champion as a per-machine model: its scores raise alerts like any other model's.

The champion (``models/champion.py``: a scikit-learn classifier from the MLflow registry,
loaded with a trust check) scores a whole batch of windows in one call before the machines'
models run; its rows reach each machine in ``Context.champion``. This model passes the rows of
its segments on (model ``champion``, the registered name and version in the evidence) so that
the alert rule turns a run of windows at or above the version's decision threshold into an
alert, cause ``champion``. Without a champion configured it writes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from floorsight.models.base import AlertRule, Context, MachineModel, ModelOutput
from floorsight.models.machine import Segment


@dataclass
class ChampionModel(MachineModel):
    """The champion's score rows of a machine's segments, through its alert rule."""

    name: ClassVar[str] = "champion"
    alert: ClassVar[AlertRule] = AlertRule(
        label="failure predicted by the MLflow champion (probability at its decision threshold)"
    )

    def score_segments(self, segments: list[Segment], context: Context) -> ModelOutput:
        if not context.champion:
            return ModelOutput()
        starts = {seg.start for seg in segments}
        return ModelOutput([r for r in context.champion if r["window_start"] in starts])
