"""ERP/MES context: work orders and spec limits from a folder of files, joined as of event time.

Each reading gets the work order that was running on its machine at the reading's own timestamp
(not the latest one), with that order's product and material lot. A reading for which no work
order was valid gets empty context columns; it is kept and flagged, never dropped. The folder is
re-read when its files change, so new work orders and changeovers reach the pipeline without a
restart.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import polars as pl

from floorsight.features import CONTEXT_COLUMNS
from floorsight.records import TIMESTAMP

WORK_ORDER_SCHEMA: dict[str, pl.DataType] = {
    "work_order": pl.String(),
    "machine_id": pl.String(),
    "product": pl.String(),
    "material_lot": pl.String(),
    "start": TIMESTAMP,
    "end": TIMESTAMP,
}

SPEC_SCHEMA: dict[str, pl.DataType] = {
    "product": pl.String(),
    "characteristic": pl.String(),
    "lsl": pl.Float64(),
    "target": pl.Float64(),
    "usl": pl.Float64(),
}


@dataclass(frozen=True, slots=True)
class ErpContext:
    """One consistent version of the ERP context."""

    work_orders: pl.DataFrame
    spec_limits: pl.DataFrame

    @classmethod
    def empty(cls) -> ErpContext:
        return cls(pl.DataFrame(schema=WORK_ORDER_SCHEMA), pl.DataFrame(schema=SPEC_SCHEMA))

    @property
    def machines(self) -> frozenset[str]:
        return frozenset(self.work_orders["machine_id"].unique().to_list())

    def join(self, readings: pl.DataFrame) -> pl.DataFrame:
        """Readings with the context valid at each reading's event time (as-of join).

        >>> from datetime import datetime, UTC
        >>> wo = pl.DataFrame({
        ...     "work_order": ["WO-1", "WO-2"], "machine_id": ["M1", "M1"],
        ...     "product": ["A", "B"], "material_lot": ["L1", "L2"],
        ...     "start": [datetime(2026, 1, 1, 6, tzinfo=UTC), datetime(2026, 1, 1, 8, tzinfo=UTC)],
        ...     "end": [datetime(2026, 1, 1, 8, tzinfo=UTC), datetime(2026, 1, 1, 9, tzinfo=UTC)],
        ... }, schema=WORK_ORDER_SCHEMA)
        >>> r = pl.DataFrame({"machine_id": ["M1"] * 3, "sensor": ["t"] * 3,
        ...     "ts": [datetime(2026, 1, 1, h, 30, tzinfo=UTC) for h in (7, 8, 9)],
        ...     "value": [1.0, 2.0, 3.0]})
        >>> ErpContext(wo, pl.DataFrame(schema=SPEC_SCHEMA)).join(r)["work_order"].to_list()
        ['WO-1', 'WO-2', '']
        """
        wo = self.work_orders.select("machine_id", "start", "end", *CONTEXT_COLUMNS)
        joined = readings.sort("ts").join_asof(
            wo.sort("start"),
            left_on="ts",
            right_on="start",
            by="machine_id",
            strategy="backward",
            check_sortedness=False,  # both sides are sorted just above
        )
        valid = pl.col("end").is_not_null() & (pl.col("ts") < pl.col("end"))
        return joined.with_columns(
            pl.when(valid).then(pl.col(c)).otherwise(pl.lit("")).alias(c) for c in CONTEXT_COLUMNS
        ).drop("start", "end")


def load_context(directory: Path) -> ErpContext:
    """Read ``work_orders.csv`` and ``spec_limits.csv`` from ``directory``."""
    work_orders = pl.read_csv(directory / "work_orders.csv", schema=WORK_ORDER_SCHEMA)
    spec_limits = pl.read_csv(directory / "spec_limits.csv", schema=SPEC_SCHEMA)
    return ErpContext(work_orders, spec_limits)


class ContextStore:
    """The current ERP context of a folder, re-read when a file in it changes."""

    FILES = ("work_orders.csv", "spec_limits.csv")

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self._stamp: tuple[float, ...] | None = None
        self._context = ErpContext.empty()

    def current(self) -> ErpContext:
        stamp = tuple(
            (self.directory / f).stat().st_mtime if (self.directory / f).exists() else -1.0
            for f in self.FILES
        )
        if stamp != self._stamp and min(stamp) >= 0:
            self._context = load_context(self.directory)
            self._stamp = stamp
        return self._context

    def join(self, readings: pl.DataFrame) -> pl.DataFrame:
        return self.current().join(readings)
