"""Shifts, machine states and OEE from what the database holds (no Streamlit here).

**Shift**: by default three 8-hour shifts a day starting at :data:`SHIFT_STARTS_UTC` (06:00,
14:00 and 22:00 UTC); a plant sets its own with a :class:`ShiftPlan` (``floorsight dashboard
--shift-start HH:MM ... --shift-hours H``). The running shift ends "now", the end of the newest
window (event time).

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

**OEE from the floor's own signals** (:func:`oee_from_signals`), when the pipeline stored
machine states (``machine_states``) and part counters (``part_counts``) for a machine:

- *planned time* = the work orders' scheduled time in the shift minus the time in a
  ``planned_stop`` state within it;
- *availability* = time in a ``running`` state within the work orders / planned time;
- *performance* = Σ (ideal cycle time of the product made × parts counted) / that running time,
  with the product of the work order running when each count arrived;
- *quality* = good / (good + scrap) of the parts counted in the shift.

Availability comes from states when the machine has a state (other than offline/unknown) in the
shift, performance and quality from counts when it has part counters; otherwise each falls back
to the window-based estimate above, and :func:`shift_oee` names each machine's ``basis``.
"""

from __future__ import annotations

import re
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
    length: timedelta = SHIFT

    @property
    def end(self) -> datetime:
        return self.start + self.length

    @property
    def label(self) -> str:
        return f"{self.start:%Y-%m-%d %H:%M}–{self.end:%H:%M} UTC"


@dataclass(frozen=True, slots=True)
class ShiftPlan:
    """When a plant's shifts start (time of day, UTC, ascending) and how long each lasts."""

    starts: tuple[timedelta, ...] = tuple(timedelta(hours=h) for h in SHIFT_STARTS_UTC)
    length: timedelta = SHIFT

    @property
    def start_times(self) -> list[str]:
        """The starts as ``HH:MM`` (UTC), as :func:`shift_plan` takes them."""
        return [f"{int(s.total_seconds()) // 3600:02d}:{_minute(s):02d}" for s in self.starts]

    @property
    def description(self) -> str:
        times = ", ".join(self.start_times)
        return f"{self.length.total_seconds() / 3600:g}-hour shifts from {times} UTC"


def _minute(offset: timedelta) -> int:
    return int(offset.total_seconds()) % 3600 // 60


_CLOCK = re.compile(r"([01]\d|2[0-3]):([0-5]\d)")


def shift_plan(starts: list[str] | tuple[str, ...], hours: float) -> ShiftPlan:
    """The plan of shifts starting at ``starts`` (``HH:MM`` UTC) and lasting ``hours`` each;
    a ValueError says which value is wrong. No start may fall inside the shift before it."""
    if not starts:
        raise ValueError("give at least one shift start (HH:MM, UTC)")
    offsets = []
    for text in starts:
        found = _CLOCK.fullmatch(text.strip())
        if found is None:
            raise ValueError(f"shift start {text!r} is no time of day HH:MM (00:00 to 23:59)")
        offsets.append(timedelta(hours=int(found[1]), minutes=int(found[2])))
    offsets.sort()
    if not 0 < hours <= 24:
        raise ValueError(f"shift length {hours:g} h must be more than 0 and at most 24 hours")
    length = timedelta(hours=hours)
    following = [*offsets[1:], offsets[0] + timedelta(days=1)]
    gaps = [b - a for a, b in zip(offsets, following, strict=True)]
    if min(gaps) < length:
        raise ValueError(
            f"{hours:g}-hour shifts overlap: starts {', '.join(sorted(starts))} leave "
            f"{min(gaps).total_seconds() / 3600:g} h between two"
        )
    return ShiftPlan(tuple(offsets), length)


def shift_of(t: datetime, plan: ShiftPlan | None = None) -> Shift:
    """The shift ``t`` falls in: the latest one started at or before it (a time between two
    shifts belongs to the earlier one, as a shift's end is not the next one's start)."""
    plan = plan or ShiftPlan()
    day = t.replace(hour=0, minute=0, second=0, microsecond=0)
    starts = [day + offset for offset in plan.starts]
    starts = [starts[-1] - timedelta(days=1), *starts]
    return Shift(max(s for s in starts if s <= t), plan.length)


def shifts(first: datetime, last: datetime, plan: ShiftPlan | None = None) -> list[Shift]:
    """Every shift from the one holding ``first`` to the one holding ``last``, newest first."""
    out, shift = [], shift_of(last, plan)
    while shift.end > first:
        out.append(shift)
        shift = shift_of(shift.start - timedelta(microseconds=1), plan)
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


#: States that say what a machine does (offline and unknown do not).
PRODUCTION_CATEGORIES = ("running", "idle", "setup", "down", "planned_stop")

SIGNAL_OEE_SCHEMA: dict[str, pl.DataType] = {
    "machine_id": pl.String(),
    "planned_s": pl.Float64(),
    "run_s": pl.Float64(),
    "availability": pl.Float64(),
    "ideal_s": pl.Float64(),
    "performance": pl.Float64(),
    "good": pl.Int64(),
    "scrap": pl.Int64(),
    "quality": pl.Float64(),
    "has_states": pl.Boolean(),
    "has_counts": pl.Boolean(),
}


def intersection_seconds(
    a: pl.DataFrame, b: pl.DataFrame, start: datetime, end: datetime
) -> pl.DataFrame:
    """Per machine, the length of (union of ``a``) ∩ (union of ``b``) within the bounds:
    |A| + |B| − |A ∪ B| (columns machine_id, s)."""
    cols = ["machine_id", "start", "end"]
    a, b = a.select(cols), b.select(cols)
    parts = [
        covered_seconds(a, start, end),
        covered_seconds(b, start, end),
        covered_seconds(pl.concat([a, b]), start, end).with_columns(-pl.col("s")),
    ]
    return pl.concat(parts).group_by("machine_id").agg(pl.col("s").sum().clip(lower_bound=0.0))


def oee_from_signals(
    work_orders: pl.DataFrame,
    states: pl.DataFrame,
    counts: pl.DataFrame,
    counted_machines: set[str],
    ideal: pl.DataFrame,
    start: datetime,
    end: datetime,
) -> pl.DataFrame:
    """OEE factors per machine over ``[start, end)`` from the floor's states and counters
    (the module docstring has the definitions; :data:`SIGNAL_OEE_SCHEMA`).

    - ``work_orders``: machine_id, product, start, end;
    - ``states``: machine_id, since, until, category (the state in force at ``start`` too);
    - ``counts``: machine_id, signal (good_count | scrap_count), ts, parts, inside the bounds;
    - ``counted_machines``: machines that have part counters at all (a counter that counted
      nothing in the shift still says no parts were made);
    - ``ideal``: product, ideal_cycle_time_s.
    """
    orders = work_orders.select("machine_id", "product", "start", "end")
    spans = states.select(
        "machine_id", pl.col("since").alias("start"), pl.col("until").alias("end"), "category"
    )
    running = spans.filter(pl.col("category") == "running")
    stops = spans.filter(pl.col("category") == "planned_stop")
    scheduled = covered_seconds(orders, start, end).rename({"s": "scheduled_s"})
    stopped = intersection_seconds(orders, stops, start, end).rename({"s": "stop_s"})
    run = intersection_seconds(orders, running, start, end).rename({"s": "run_s"})
    with_states = (
        spans.filter(
            pl.col("category").is_in(PRODUCTION_CATEGORIES)
            & (pl.col("end") > start)
            & (pl.col("start") < end)
        )
        .select("machine_id")
        .unique()
        .with_columns(has_states=pl.lit(True))
    )
    made = counts.filter((pl.col("ts") >= start) & (pl.col("ts") < end))
    # each count with the product of the work order running when it arrived
    priced = (
        made.join(orders, on="machine_id", how="left", suffix="_wo")
        .filter(pl.col("ts").is_between(pl.col("start"), pl.col("end"), closed="left"))
        .join(ideal.select("product", "ideal_cycle_time_s"), on="product", how="inner")
        .group_by("machine_id")
        .agg((pl.col("ideal_cycle_time_s") * pl.col("parts")).sum().alias("ideal_s"))
    )
    parts = made.group_by("machine_id").agg(
        pl.col("parts").filter(pl.col("signal") == "good_count").sum().alias("good"),
        pl.col("parts").filter(pl.col("signal") == "scrap_count").sum().alias("scrap"),
    )
    machines = pl.concat(
        [
            f.select(pl.col("machine_id").cast(pl.String))
            for f in (scheduled, run, with_states, parts)
        ]
        + [pl.DataFrame({"machine_id": sorted(counted_machines)}, schema={"machine_id": pl.String})]
    ).unique()
    out = (
        machines.join(scheduled, on="machine_id", how="left")
        .join(stopped, on="machine_id", how="left")
        .join(run, on="machine_id", how="left")
        .join(with_states, on="machine_id", how="left")
        .join(priced, on="machine_id", how="left")
        .join(parts, on="machine_id", how="left")
        .with_columns(
            pl.col("scheduled_s", "stop_s", "run_s", "ideal_s").fill_null(0.0),
            pl.col("good", "scrap").fill_null(0),
            has_states=pl.col("has_states").fill_null(False),
            has_counts=pl.col("machine_id").is_in(sorted(counted_machines)),
        )
        .with_columns(planned_s=(pl.col("scheduled_s") - pl.col("stop_s")).clip(lower_bound=0.0))
        .with_columns(
            availability=pl.when(pl.col("planned_s") > 0).then(
                pl.min_horizontal(pl.col("run_s") / pl.col("planned_s"), pl.lit(1.0))
            ),
            performance=pl.when(pl.col("run_s") > 0).then(pl.col("ideal_s") / pl.col("run_s")),
            quality=pl.when(pl.col("good") + pl.col("scrap") > 0).then(
                pl.col("good") / (pl.col("good") + pl.col("scrap"))
            ),
        )
    )
    return out.select(list(SIGNAL_OEE_SCHEMA)).cast(SIGNAL_OEE_SCHEMA).sort("machine_id")


def shift_oee(windows: pl.DataFrame, signals: pl.DataFrame) -> pl.DataFrame:
    """Each machine's OEE factors from the best basis it has: availability from states when it
    has them, performance and quality from part counts when it has counters, the window-based
    estimate (:func:`oee`) otherwise. ``basis`` says which: ``states + counts``, ``states``,
    ``counts`` or ``windows``."""
    joined = windows.join(signals, on="machine_id", how="full", coalesce=True, suffix="_sig")
    states = pl.col("has_states").fill_null(False)
    counted = pl.col("has_counts").fill_null(False)
    run_s = pl.when(states).then(pl.col("run_s_sig")).otherwise(pl.col("run_s"))
    out = joined.with_columns(
        planned_s=pl.when(states).then(pl.col("planned_s_sig")).otherwise(pl.col("planned_s")),
        availability=pl.when(states)
        .then(pl.col("availability_sig"))
        .otherwise(pl.col("availability")),
        performance=pl.when(counted)
        .then(pl.when(run_s > 0).then(pl.col("ideal_s") / run_s))
        .otherwise(pl.col("performance")),
        quality=pl.when(counted).then(pl.col("quality_sig")).otherwise(pl.col("quality")),
        run_s=run_s,
        basis=pl.when(states & counted)
        .then(pl.lit("states + counts"))
        .when(states)
        .then(pl.lit("states"))
        .when(counted)
        .then(pl.lit("counts"))
        .otherwise(pl.lit("windows")),
    ).with_columns(oee=pl.col("availability") * pl.col("performance") * pl.col("quality"))
    return (
        out.select(*OEE_SCHEMA, "basis")
        .cast(OEE_SCHEMA | {"basis": pl.String()})
        .sort("machine_id")
    )


def state_label(state: str, category: str) -> str:
    """How the overview shows a state from the floor: its category, and the state's own name
    when it says more (``down (Aborted)``, ``running``)."""
    same = re.sub(r"[^a-z0-9]", "", state.lower()) == category.replace("_", "")
    return category if same else f"{category} ({state})"


def floor_state(state: str, category: str, in_setup: bool, maintenance: str | None) -> str:
    """The overview's state of a machine that reports its own: :func:`state_label`, told more
    precisely by the ERP/CMMS context when the machine stands (a PackML machine changes over
    in Stopped, an idle state: ``setup (Stopped)``; ``down (repair: Aborted)``)."""
    if category == "idle" and in_setup:
        return f"setup ({state})"
    if category in ("idle", "down") and maintenance:
        return f"down ({maintenance.replace('_', ' ')}: {state})"
    return state_label(state, category)


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
