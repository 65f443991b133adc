"""The notify sink: alert rows -> routed notifications queued in the alert outbox.

Queuing is all it does (a SQLite insert per notification, dropped when its key is there
already), so a destination that is down never stalls the dataflow; the
:class:`floorsight.alerts.dispatcher.Dispatcher` delivers. Replayed alert rows after a restart
queue nothing new: the keys are the same.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl
from bytewax.outputs import DynamicSink, StatelessSinkPartition

from floorsight.alerts.dispatcher import enqueue
from floorsight.alerts.notify import notifications
from floorsight.alerts.outbox import Outbox
from floorsight.alerts.routing import Routing
from floorsight.pipelines.context import ContextStore


class NotifySink(DynamicSink[pl.DataFrame]):
    def __init__(self, outbox: Path, routing: Routing, context: ContextStore) -> None:
        self.outbox, self.routing, self.context = Path(outbox), routing, context

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _NotifyPartition:
        return _NotifyPartition(Outbox(self.outbox), self.routing, self.context)


class _NotifyPartition(StatelessSinkPartition[pl.DataFrame]):
    def __init__(self, outbox: Outbox, routing: Routing, context: ContextStore) -> None:
        self.outbox, self.routing, self.context = outbox, routing, context

    def write_batch(self, items: list[pl.DataFrame]) -> None:
        erp = self.context.current()
        tables = {**erp.records, "work_orders": erp.work_orders}
        enqueue(self.outbox, notifications(pl.concat(items), self.routing, tables))
