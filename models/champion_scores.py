"""The MLflow champion as a per-machine model: its scores raise alerts like any other model's.

The champion (``models/champion.py``: a scikit-learn classifier from the MLflow registry,
loaded with a trust check) scores a whole batch of windows in one call before the machines'
models run; its rows reach each machine in ``Context.champion``. This model passes on the rows
of the windows it is given (model ``champion`` whatever the version; the registered name and
version are in the evidence), so that the alert rule turns a run of windows at or above the
version's decision threshold into an alert, cause ``champion``, whose reason and evidence name
the registered model and version. Without a champion configured it writes nothing.

The engine may call a model more than once per batch (a maintenance event that ended inside
the batch splits it between two windows: ``models.engine``), each time with the same
``Context.champion``: only the rows of the call's own windows are returned, so every champion
row reaches the alert rule once and in time order. The engine never splits the segments of one
window (one per work order it ran), so the window start is key enough.
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
        if not context.champion or not segments:
            return ModelOutput()
        starts = {seg.start for seg in segments}
        return ModelOutput([r for r in context.champion if r["window_start"] in starts])
