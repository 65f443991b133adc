"""Online models that score machine windows.

Two protocols:

- **Detectors** (River's): ``learn_one(x: dict) -> None`` and ``score_one(x: dict) -> float``,
  high means anomalous, calibrated to 0..1 here: :class:`MultivariateZScore` (largest
  per-feature z-score as one minus a Bonferroni p-value), :class:`RobustMahalanobis`
  (Mahalanobis distance to a robust mean and covariance, one minus a chi-squared p-value),
  :class:`ControlLimitFilter` (flags scores above a control limit learned in Phase I).
- **Per-machine models** (:class:`MachineModel`, ``models/base.py``): what the pipeline runs
  for each machine, one instance of every model in the registry (``models/registry.py``, the
  one list of them) run by :class:`~floorsight.models.engine.MachineModels`. A model has one
  name (score rows' ``model``, the alert cause, its settings section), scores and learns a
  batch of window segments with the machine's :class:`Context` and returns a
  :class:`ModelOutput` (score rows and rows of its own tables), re-bases at changeovers and
  maintenance, and takes feedback.

:data:`SCORES` is the DuckDB table the score rows go to.
"""

from __future__ import annotations

from floorsight.models.base import AlertRule, Context, MachineModel, ModelOutput
from floorsight.models.control_limit import ControlLimitFilter
from floorsight.models.machine import SCORE_SCHEMA
from floorsight.models.mahalanobis import RobustMahalanobis
from floorsight.models.tables import SCORES
from floorsight.models.zscore import MultivariateZScore

__all__ = [
    "SCORES",
    "SCORE_SCHEMA",
    "AlertRule",
    "Context",
    "ControlLimitFilter",
    "MachineModel",
    "ModelOutput",
    "MultivariateZScore",
    "RobustMahalanobis",
]
