"""What the work-order models share: each window judged against the statistics of its order.

:class:`OrderModel` walks a machine's complete windows in time order, keeps the running work
order (:class:`Order`), closes it when a window of another order comes (a changeover: the
finished order teaches the product's reference unless it was flagged) and writes one score row
per window. Subclasses say what an order keeps (:meth:`OrderModel._new_order`), how a window
is judged within it (:meth:`OrderModel._step`) and what a finished order teaches
(:meth:`OrderModel._close_order`).
"""

from __future__ import annotations

from dataclasses import dataclass

from floorsight.models.base import Context, MachineModel, ModelOutput
from floorsight.models.machine import Segment, full_means


@dataclass
class Order:
    """The running work order of a machine, as far as a work-order model has seen it."""

    work_order: str
    product: str
    windows: int = 0
    flagged: bool = False


class OrderModel(MachineModel):
    """Base of the models that judge windows against their work order's own statistics."""

    needs_coverage = True
    threshold: float
    _order: Order | None

    def _new_order(self, work_order: str, product: str) -> Order:
        raise NotImplementedError

    def _step(self, order: Order, x: dict[str, float]) -> tuple[float, str]:
        """(score, evidence) of one window's means ``x`` within ``order``."""
        raise NotImplementedError

    def _close_order(self) -> None:
        raise NotImplementedError

    def score_segments(self, segments: list[Segment], context: Context) -> ModelOutput:
        """One score row per complete segment, in time order."""
        rows = []
        for seg in segments:
            if not seg.full:
                continue
            x = full_means(seg)
            if not x:
                continue
            if self._order is None or seg.work_order != self._order.work_order:
                self._close_order()
                self._order = self._new_order(seg.work_order, seg.product or "?")
            score, evidence = self._step(self._order, x)
            flagged = score >= self.threshold
            self._order.flagged |= flagged
            rows.append(seg.score_row(self.name, score, flagged, evidence))
        return ModelOutput(rows)
