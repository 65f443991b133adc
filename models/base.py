"""What a per-machine model is: the protocol every registered model follows.
(``floorsight.models.registry.MODELS``).

The score step keeps, per machine, one instance of every registered model
(:class:`~floorsight.models.engine.MachineModels`) and feeds them the machine's closed windows
as :class:`~floorsight.models.machine.Segment` lists (one machine window within one work order,
in time order). A model:

- has one **name**, used end to end: the ``model`` column of its score rows, the alert
  ``cause`` its flags raise (when it has an :class:`AlertRule`), its section in the models
  settings file, its key in online metrics;
- **scores and learns** a batch of segments in one call, :meth:`MachineModel.score_segments`,
  with the machine's :class:`Context` (ERP spec limits, lab results, champion scores, the
  windows an earlier model found the measurement faulty in), and returns a
  :class:`ModelOutput`: one score row per window it judged (``score`` in 0..1, 1 is the
  strongest evidence, ``is_anomaly`` its flag) and the rows of its own tables (``tables``);
  scoring a batch must give the same rows as scoring the same segments in several batches;
- **re-bases** itself: at a changeover (a segment of another work order than the one before:
  each model sees it in its segments) and at a maintenance event from the CMMS log
  (:meth:`MachineModel.maintenance`: a tool change or repair moves the operating point; a
  failure is a label);
- takes **feedback** (:meth:`MachineModel.feedback`): people's label of one of its alerts;
- is its own **state**: a plain object, pickled into recovery snapshots and the model
  registry; nothing of the process (files, clients, locks) lives in it.

Adding a model is one file with one such class and one line in the registry.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import ClassVar

import polars as pl

from floorsight.models.machine import Coverage, score_frame, segments_of
from floorsight.storage import TableSpec

#: (product, characteristic) -> (lsl, target, usl): the ERP spec limits as a lookup
SpecLimits = dict[tuple[str, str], tuple[float, float, float]]


def fading_factor(half_life: float) -> float:
    """The weight of the newest value in an exponentially weighted statistic whose weights
    halve every ``half_life`` values (River's ``fading_factor``)."""
    return 1.0 - 0.5 ** (1.0 / half_life)


@dataclass(frozen=True, slots=True)
class Maintenance:
    """One CMMS event of the machine: ``kind`` is failure, repair, tool_change, maintenance..."""

    kind: str
    start: datetime
    end: datetime


@dataclass(frozen=True, slots=True)
class LabResult:
    """One lab measurement of a part's quality characteristic, known from ``available_at``."""

    sample_id: str
    characteristic: str
    part_made_at: datetime
    available_at: datetime
    value: float


@dataclass
class Context:
    """What a machine's models may read beside its windows, for one call.

    ``quarantine`` holds the window starts in which a model with ``quarantines = True`` (sensor
    health) found the measurement itself faulty: the models after it score those windows but
    learn nothing from them. ``champion`` holds the MLflow champion's score rows of the
    machine's windows in this batch (scored beforehand, in one call for the whole shard).
    """

    machine_id: str = ""
    specs: SpecLimits = field(default_factory=dict)
    labs: list[LabResult] = field(default_factory=list)
    champion: list[dict] = field(default_factory=list)
    quarantine: set = field(default_factory=set)

    @cached_property
    def characteristics(self) -> tuple[str, ...]:
        """The quality characteristics: every sensor with spec limits for some product,
        sorted (derived once per call, for every model that reads it)."""
        return tuple(sorted({c for _, c in self.specs}))


@dataclass(frozen=True, slots=True)
class AlertRule:
    """How a model's flagged windows become alerts (``alerts.rules.AlertTracker``).

    ``open_after`` / ``clear_after``: consecutive flagged / normal windows to open / clear an
    alert (None: the engine's defaults); ``label`` is how the alert's reason names what was
    seen.
    """

    label: str
    open_after: int | None = None
    clear_after: int | None = None


@dataclass(slots=True)
class ModelOutput:
    """What one call of a model returns: score rows (the ``scores`` table) and the rows of the
    model's own tables, by table name."""

    scores: list[dict] = field(default_factory=list)
    tables: dict[str, list[dict]] = field(default_factory=dict)


class MachineModel:
    """Base of every per-machine model (see the module docstring for the protocol).

    Subclasses are dataclasses whose fields are their settings (the models settings file sets
    them by name) and, with a leading underscore, their state.
    """

    #: the model's one name: score rows' ``model``, the alert ``cause``, its settings section
    name: ClassVar[str]
    #: how its flags become alerts; None: scores only, no alert
    alert: ClassVar[AlertRule | None] = None
    #: its own tables beside ``scores`` (``ModelOutput.tables`` rows go there)
    tables: ClassVar[tuple[TableSpec, ...]] = ()
    #: its flagged windows are faulty measurements: later models learn nothing from them
    quarantines: ClassVar[bool] = False
    #: it reads only complete windows (``Segment.full``, see ``engine.Coverage``)
    needs_coverage: ClassVar[bool] = False

    def score_segments(self, segments: list, context: Context) -> ModelOutput:
        raise NotImplementedError

    def maintenance(self, event: Maintenance) -> None:
        """A CMMS event of the machine ended (before the next segments): re-base if it moves
        the operating point. Default: nothing."""

    def feedback(self, label: str) -> None:
        """People labelled one of this model's alerts ``true_problem`` or ``false_alarm``.
        Default: nothing (the alert rule adapts: ``alerts.engine``)."""

    def metrics(self) -> dict[str, float]:
        """Online metrics of the model's own (thresholds ...), for the model registry."""
        return {}

    def score(self, features: pl.DataFrame, context: Context | None = None) -> pl.DataFrame:
        """Score rows of one machine's feature rows, as a ``scores`` frame: the model on its
        own, outside the engine (examples, notebooks, tests). Keeps its own coverage state."""
        segments = segments_of(features)
        if self.needs_coverage:
            coverage = self.__dict__.setdefault("_own_coverage", Coverage())
            coverage.mark(segments)
        return score_frame(self.score_segments(segments, context or Context()).scores)
