"""Bytewax sources that emit batches of readings as polars frames."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime, timedelta

import polars as pl
from bytewax.inputs import DynamicSource, StatelessSourcePartition

from floorsight.records import utc_now

#: Makes the frame iterator for one worker: (worker_index, worker_count) -> iterator.
FrameIteratorFactory = Callable[[int, int], Iterator[pl.DataFrame | None]]


class FrameSource(DynamicSource[pl.DataFrame]):
    """Frames of readings from an iterator built per worker.

    The iterator yields a frame when readings are ready and None when there is nothing yet; the
    partition then sleeps for ``poll`` instead of spinning. It stops when the iterator ends.
    """

    def __init__(self, factory: FrameIteratorFactory, poll: timedelta = timedelta(milliseconds=50)):
        self.factory = factory
        self.poll = poll

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _FramePartition:
        return _FramePartition(self.factory(worker_index, worker_count), self.poll)


class _FramePartition(StatelessSourcePartition[pl.DataFrame]):
    def __init__(self, frames: Iterator[pl.DataFrame | None], poll: timedelta) -> None:
        self._frames = frames
        self._poll = poll
        self._awake: datetime | None = None

    def next_batch(self) -> list[pl.DataFrame]:
        frame = next(self._frames)  # StopIteration ends this partition
        if frame is None or frame.height == 0:
            self._awake = utc_now() + self._poll
            return []
        self._awake = None
        return [frame]

    def next_awake(self) -> datetime | None:
        return self._awake
