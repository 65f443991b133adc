"""Online models that score machine windows.

Protocol (River's): an anomaly detector has ``learn_one(x: dict) -> None`` and
``score_one(x: dict) -> float`` where high means anomalous; scores here are calibrated to 0..1.

- :class:`MultivariateZScore`: largest per-feature z-score as one minus a Bonferroni p-value.
- :class:`RobustMahalanobis`: Mahalanobis distance to a robust (Huber) mean and covariance, as
  one minus a chi-squared p-value.
- :class:`ControlLimitFilter`: flags scores above a control limit learned in Phase I (a
  quantile of the detector's own honest scores), learns only what it does not flag.
- :class:`MachineAnomalyModel`: what the pipeline runs per machine: one detector per product,
  anomalous windows not learned, one score row per window.
- :data:`SCORES`: the DuckDB table the scores go to.
"""

from __future__ import annotations

from floorsight.models.control_limit import ControlLimitFilter
from floorsight.models.machine import SCORE_SCHEMA, MachineAnomalyModel
from floorsight.models.mahalanobis import RobustMahalanobis
from floorsight.models.tables import SCORES
from floorsight.models.zscore import MultivariateZScore

__all__ = [
    "SCORES",
    "SCORE_SCHEMA",
    "ControlLimitFilter",
    "MachineAnomalyModel",
    "MultivariateZScore",
    "RobustMahalanobis",
]
