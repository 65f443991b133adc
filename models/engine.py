"""The per-machine engine: every registered model of one machine, fed its closed windows.

:class:`MachineModels` holds one instance of each model of the registry
(``models/registry.py``) and the machine's :class:`~floorsight.models.machine.Coverage`, marks
which sensors of each window are complete (once, for every model), applies each maintenance
event of the CMMS log once it has ended (before the first window after it), and runs the models
in registry order: a model that quarantines windows (sensor health) tells the models after it
which windows not to learn from. Turning the models' flags into alerts is ``alerts/``'s job.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from floorsight.models.base import Context, MachineModel, Maintenance, ModelOutput
from floorsight.models.machine import Coverage, Segment
from floorsight.models.registry import ModelSettings, build_models

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass
class MachineModels:
    """Every registered model of one machine; :meth:`update` takes its closed windows."""

    settings: ModelSettings | None = None
    models: dict[str, MachineModel] = field(default_factory=dict)
    coverage: Coverage = field(default_factory=Coverage)
    #: machine windows scored
    windows: int = 0
    #: end of the last maintenance event applied
    maintenance_seen: datetime = EPOCH
    #: maintenance events applied
    maintenance_events: int = 0

    def __post_init__(self) -> None:
        if not self.models:
            self.models = build_models(self.settings)

    def update(
        self,
        segments: list[Segment],
        context: Context,
        maintenance: list[Maintenance] | None = None,
    ) -> dict[str, ModelOutput]:
        """Run every model over the machine's segments (in time order); returns each model's
        output for all of them, by model name.

        ``maintenance``: the machine's CMMS events as far as they are known; an event that
        ended before a segment is applied (each once) to every model before that segment.
        """
        due = sorted(
            (m for m in maintenance or () if m.end > self.maintenance_seen), key=lambda m: m.end
        )
        out: dict[str, ModelOutput] = {}
        rest = segments
        for event in due:
            if not rest or rest[-1].start < event.end:
                break
            k = next(i for i, seg in enumerate(rest) if seg.start >= event.end)
            if k:
                self._score(rest[:k], context, out)
            self.maintenance_seen = event.end
            self.maintenance_events += event.kind != "failure"
            for model in self.models.values():
                model.maintenance(event)
            rest = rest[k:]
        if rest:
            self._score(rest, context, out)
        return out

    def _score(self, segments: list[Segment], context: Context, out: dict) -> None:
        self.coverage.mark(segments)
        self.windows += len({seg.start for seg in segments})
        for name, model in self.models.items():
            result = model.score_segments(segments, context)
            if model.quarantines:
                context.quarantine.update(
                    r["window_start"] for r in result.scores if r["is_anomaly"]
                )
            have = out.get(name)
            if have is None:
                out[name] = result
                continue
            have.scores.extend(result.scores)
            for table, rows in result.tables.items():
                have.tables.setdefault(table, []).extend(rows)
