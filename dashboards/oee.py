"""Shifts, machine states and OEE from what the database holds (no Streamlit here).

**Shift**: three 8-hour shifts a day starting at :data:`SHIFT_STARTS_UTC` (06:00, 14:00 and
22:00 UTC). The running shift ends "now", the end of the newest window (event time).

**OEE** of a machine over a shift (docs/dashboard.md has the reasoning):

- *planned time*: the time work orders were scheduled on the machine inside the shift
  (``work_orders.start`` .. ``end``, clipped to the shift; setups count, so a long setup costs
  availability);
- *availability* = run time / planned time, where run time is the time covered by feature
  windows of that machine under a work order (the plant publishes readings only while a machine
  runs, so a window with readings is running time);
- *performance* = the mean over those windows of ideal cycle time (``erp_products``, from the
  recipe) / measured cycle time (the window mean of ``cycle_time_s``); not measured (None) on
  machines that report no cycle time;
- *quality* = the share of windows whose mean of a spec-limited characteristic (the in-line
  gauge) lies within [LSL, USL] of the product made then;
- *OEE* = availability × performance × quality, None when one of them is not known.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import polars as pl

#: Hours (UTC) at which the three 8-hour shifts start.
SHIFT_STARTS_UTC = (6, 14, 22)
SHIFT = timedelta(hours=8)

#: A machine whose newest window ended within this many windows of "now" is running.
RUNNING_WITHIN_WINDOWS = 3

OEE_SCHEMA: dict[str, pl.DataType] = {
    "machine_id": pl.String(),
    "planned_s": pl.Float64(),
    "run_s": pl.Float64(),
    "availability": pl.Float64(),
    "performance": pl.Float64(),
    "quality": pl.Float64(),
    "oee": pl.Float64(),
}


@dataclass(frozen=True, slots=True)
class Shift:
    start: datetime

    @property
    def end(self) -> datetime:
        return self.start + SHIFT

    @property
    def label(self) -> str:
        return f"{self.start:%Y-%m-%d %H:%M}–{self.end:%H:%M} UTC"


def shift_of(t: datetime) -> Shift:
    """The shift ``t`` falls in."""
    day = t.replace(hour=0, minute=0, second=0, microsecond=0)
    starts = [day + timedelta(hours=h) for h in SHIFT_STARTS_UTC]
    starts = [starts[-1] - timedelta(days=1), *starts]
    return Shift(max(s for s in starts if s <= t))


def shifts(first: datetime, last: datetime) -> list[Shift]:
    """Every shift from the one holding ``first`` to the one holding ``last``, newest first."""
    out, shift = [], shift_of(last)
    while shift.end > first:
        out.append(shift)
        shift = shift_of(shift.start - timedelta(microseconds=1))
    return out


def covered_seconds(intervals: pl.DataFrame, start: datetime, end: datetime) -> pl.DataFrame:
    """Per machine, the length of the union of its ``[start, end)`` intervals within the bounds.

    ``intervals`` has columns machine_id, start, end; overlapping intervals count once.
    """
    clipped = (
        intervals.with_columns(
            pl.col("start").clip(lower_bound=start), pl.col("end").clip(upper_bound=end)
        )
        .filter(pl.col("end") > pl.col("start"))
        .sort("machine_id", "start")
    )
    # gaps-and-islands: an interval starts a new island when it begins after every earlier end
    islands = clipped.with_columns(
        reach=pl.col("end").cum_max().shift(1).over("machine_id")
    ).with_columns(
        island=(pl.col("reach").is_null() | (pl.col("start") > pl.col("reach")))
        .cum_sum()
        .over("machine_id")
    )
    return (
        islands.group_by("machine_id", "island")
        .agg(pl.col("start").min(), pl.col("end").max())
        .group_by("machine_id")
        .agg(((pl.col("end") - pl.col("start")).dt.total_microseconds().sum() / 1e6).alias("s"))
    )


def oee(
    work_orders: pl.DataFrame,
    run_windows: pl.DataFrame,
    cycles: pl.DataFrame,
    quality: pl.DataFrame,
    start: datetime,
    end: datetime,
) -> pl.DataFrame:
    """OEE per machine over ``[start, end)`` (see the module docstring for the definitions).

    - ``work_orders``: machine_id, start, end;
    - ``run_windows``: machine_id, window_start, window_end (distinct windows with readings);
    - ``cycles``: machine_id, cycle_time_s (measured), ideal_cycle_time_s;
    - ``quality``: machine_id, mean, lsl, usl.
    """
    planned = covered_seconds(work_orders.select("machine_id", "start", "end"), start, end)
    run = covered_seconds(
        run_windows.select("machine_id", start="window_start", end="window_end"), start, end
    )
    performance = (
        cycles.filter(pl.col("ideal_cycle_time_s").is_not_null() & (pl.col("cycle_time_s") > 0))
        .group_by("machine_id")
        .agg((pl.col("ideal_cycle_time_s") / pl.col("cycle_time_s")).mean().alias("performance"))
    )
    good = quality.group_by("machine_id").agg(
        pl.col("mean").is_between(pl.col("lsl"), pl.col("usl")).mean().alias("quality")
    )
    machines = pl.concat(
        [f.select("machine_id") for f in (planned, run, performance, good)]
    ).unique()
    out = (
        machines.join(planned.rename({"s": "planned_s"}), on="machine_id", how="left")
        .join(run.rename({"s": "run_s"}), on="machine_id", how="left")
        .join(performance, on="machine_id", how="left")
        .join(good, on="machine_id", how="left")
        .with_columns(pl.col("planned_s", "run_s").fill_null(0.0))
        .with_columns(
            availability=pl.when(pl.col("planned_s") > 0).then(
                pl.min_horizontal(pl.col("run_s") / pl.col("planned_s"), pl.lit(1.0))
            )
        )
        .with_columns(
            oee=pl.col("availability") * pl.col("performance").cast(pl.Float64) * pl.col("quality")
        )
    )
    return out.select(list(OEE_SCHEMA)).cast(OEE_SCHEMA).sort("machine_id")


def machine_state(
    now: datetime,
    last_window_end: datetime | None,
    window_s: float,
    in_setup: bool,
    maintenance: str | None,
    has_work_order: bool,
) -> str:
    """What a machine is doing at ``now``, from its readings and the ERP/CMMS context."""
    if last_window_end is not None and now - last_window_end <= timedelta(
        seconds=RUNNING_WITHIN_WINDOWS * window_s
    ):
        return "running"
    if maintenance:
        return f"down ({maintenance.replace('_', ' ')})"
    if in_setup:
        return "setup"
    if has_work_order:
        return "no readings"
    return "idle"
