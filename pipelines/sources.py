"""Bytewax sources that emit batches of readings as polars frames."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime, timedelta

import polars as pl
from bytewax.inputs import DynamicSource, StatelessSourcePartition

from floorsight.records import Signals, utc_now

#: Makes the frame iterator for one worker: (worker_index, worker_count) -> iterator.
FrameIteratorFactory = Callable[[int, int], Iterator[pl.DataFrame | Signals | None]]


class FrameSource(DynamicSource[pl.DataFrame | Signals]):
    """Frames of readings, and machine signals, from an iterator built per worker.

    The iterator yields a frame when readings are ready, a :class:`~floorsight.records.Signals`
    when machine states or part counters changed (the flow stores them apart from the
    readings), and None when there is nothing yet; the partition then sleeps for ``poll``
    instead of spinning. It stops when the iterator ends.
    """

    def __init__(self, factory: FrameIteratorFactory, poll: timedelta = timedelta(milliseconds=50)):
        self.factory = factory
        self.poll = poll

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _FramePartition:
        return _FramePartition(self.factory(worker_index, worker_count), self.poll)


class _FramePartition(StatelessSourcePartition[pl.DataFrame | Signals]):
    def __init__(self, frames: Iterator[pl.DataFrame | Signals | None], poll: timedelta) -> None:
        self._frames = frames
        self._poll = poll
        self._awake: datetime | None = None

    def next_batch(self) -> list[pl.DataFrame | Signals]:
        frame = next(self._frames)  # StopIteration ends this partition
        rows = frame.frame if isinstance(frame, Signals) else frame
        if rows is None or rows.height == 0:
            self._awake = utc_now() + self._poll
            return []
        self._awake = None
        return [frame]

    def next_awake(self) -> datetime | None:
        return self._awake
