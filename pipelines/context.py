"""ERP/MES context: work orders and spec limits from a folder of files, joined as of event time.

Each reading gets the work order that was running on its machine at the reading's own timestamp
(not the latest one), with that order's product and material lot. A reading for which no work
order was valid is held for a bounded event time in case its context arrives late
(:class:`ContextHold`), then gets empty context columns: it is kept and flagged, never dropped.
The folder is re-read when its files change, so new work orders and changeovers reach the
pipeline without a restart.

Every load is checked twice: row by row (a bad row becomes a dead letter with its reason) and as
a whole by the Great Expectations suites of ``features.expectations`` (keys unique, LSL < target
< USL, times ordered, foreign keys resolve). A load that fails its suites while a load that
passed them is in use is rejected as a whole, with its report, and the pipeline keeps the last
good context (see docs/data-quality.md).
"""

from __future__ import annotations

import logging
import math
import re
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import polars as pl

from floorsight.features import CONTEXT_COLUMNS
from floorsight.features.expectations import (
    ValidationReport,
    content_hash,
    validate_context_in_worker,
)
from floorsight.records import TIMESTAMP

log = logging.getLogger("floorsight.context")

WORK_ORDER_SCHEMA: dict[str, pl.DataType] = {
    "work_order": pl.String(),
    "machine_id": pl.String(),
    "product": pl.String(),
    "material_lot": pl.String(),
    "start": TIMESTAMP,
    "end": TIMESTAMP,
}

#: Context tables read when present, besides work orders and spec limits (the simulator writes
#: all of them: see docs/simulator.md).
RECORD_TABLES = (
    "machines",
    "products",
    "recipes",
    "batches",
    "material_lots",
    "genealogy",
    "customer_orders",
    "shipments",
    "maintenance_log",
    "lab_results",
)

SPEC_SCHEMA: dict[str, pl.DataType] = {
    "product": pl.String(),
    "characteristic": pl.String(),
    "lsl": pl.Float64(),
    "target": pl.Float64(),
    "usl": pl.Float64(),
}


@dataclass(frozen=True, slots=True)
class ErpContext:
    """One consistent version of the ERP context.

    ``records`` holds the other context tables found beside the work orders (see
    ``RECORD_TABLES``: lots, genealogy, customer orders, maintenance log, lab results, ...) as
    they were read; the pipeline mirrors them into DuckDB for notebooks and dashboards.
    """

    work_orders: pl.DataFrame
    spec_limits: pl.DataFrame
    records: dict[str, pl.DataFrame] = field(default_factory=dict)
    #: the tables as read (before the row checks): what the context suites judge
    raw: dict[str, pl.DataFrame] = field(default_factory=dict)
    #: content hash of the tables as read: equal loads have equal fingerprints
    fingerprint: str = ""

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
        wo = self.work_orders
        if "batch" not in wo.columns:
            wo = wo.with_columns(batch=pl.lit(""))
        wo = wo.select("machine_id", "start", "end", *CONTEXT_COLUMNS)
        joined = _in_time_order(readings).join_asof(
            wo.sort("start"),
            left_on="ts",
            right_on="start",
            by="machine_id",
            strategy="backward",
            check_sortedness=False,  # both sides are sorted just above
        )
        valid = joined["end"].is_not_null() & (joined["ts"] < joined["end"])
        if valid.all():  # the usual case: every reading has its order, nothing to blank
            return joined.drop("start", "end")
        return joined.with_columns(
            pl.when(valid).then(pl.col(c)).otherwise(pl.lit("")).alias(c) for c in CONTEXT_COLUMNS
        ).drop("start", "end")


def _in_time_order(readings: pl.DataFrame) -> pl.DataFrame:
    """``readings`` sorted by time; a frame already in order (the usual case) is not re-sorted."""
    if readings["ts"].is_sorted():
        return readings.with_columns(pl.col("ts").set_sorted())
    return readings.sort("ts", maintain_order=True)


def load_context(directory: Path) -> tuple[ErpContext, pl.DataFrame | None]:
    """Read ``work_orders.csv`` and ``spec_limits.csv`` from ``directory``.

    Rows that break a rule (see :func:`check_work_orders`, :func:`check_spec_limits`) are
    returned as dead letters with their reason; the valid rows form the context.
    """
    work_orders = pl.read_csv(directory / "work_orders.csv", infer_schema=False)
    spec_limits = pl.read_csv(directory / "spec_limits.csv", infer_schema=False)
    records = {
        name: pl.read_csv(directory / f"{name}.csv", try_parse_dates=True)
        for name in RECORD_TABLES
        if (directory / f"{name}.csv").exists()
    }
    return _checked(work_orders, spec_limits, records)


def load_duckdb_context(path: Path) -> tuple[ErpContext, pl.DataFrame | None]:
    """Read the tables ``work_orders``, ``spec_limits`` and ``batches`` (optional) of a DuckDB
    file, checked like the CSV files."""
    con = duckdb.connect(str(path), read_only=True)
    try:
        tables = {r[0] for r in con.sql("SHOW TABLES").fetchall()}
        for needed in ("work_orders", "spec_limits"):
            if needed not in tables:
                raise ValueError(f"{path}: no table {needed} (has {sorted(tables)})")

        def text(table: str) -> pl.DataFrame:
            return _as_text(con.sql(f'SELECT * FROM "{table}"').pl())

        work_orders, spec_limits = text("work_orders"), text("spec_limits")
        records = {
            name: con.sql(f'SELECT * FROM "{name}"').pl()
            for name in RECORD_TABLES
            if name in tables
        }
    finally:
        con.close()
    return _checked(work_orders, spec_limits, records)


def load_postgres_context(dsn: str) -> tuple[ErpContext, pl.DataFrame | None]:
    """Read ``work_orders``, ``spec_limits`` and ``batches`` (optional) from PostgreSQL."""
    import psycopg

    with psycopg.connect(dsn, connect_timeout=10) as con:
        tables = {
            r[0]
            for r in con.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
            ).fetchall()
        }
        for needed in ("work_orders", "spec_limits"):
            if needed not in tables:
                raise ValueError(f"{_redact(dsn)}: no table {needed} (has {sorted(tables)})")

        def read(table: str) -> pl.DataFrame:
            cur = con.execute(f'SELECT * FROM "{table}"')
            names = [d.name for d in cur.description]
            rows = cur.fetchall()
            return pl.DataFrame(rows, schema=names, orient="row", infer_schema_length=None)

        work_orders = _as_text(read("work_orders"))
        spec_limits = _as_text(read("spec_limits"))
        records = {name: read(name) for name in RECORD_TABLES if name in tables}
    return _checked(work_orders, spec_limits, records)


def _redact(dsn: str) -> str:
    return re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", dsn)


def _as_text(frame: pl.DataFrame) -> pl.DataFrame:
    """Every column as text, times as ISO 8601: the checks parse them like CSV fields."""
    return frame.with_columns(
        pl.col(c).dt.to_string("%Y-%m-%dT%H:%M:%S%.f%z")
        if frame[c].dtype == pl.Datetime
        else pl.col(c).cast(pl.String)
        for c in frame.columns
    )


def _checked(
    work_orders: pl.DataFrame, spec_limits: pl.DataFrame, records: dict[str, pl.DataFrame]
) -> tuple[ErpContext, pl.DataFrame | None]:
    batches = records.get("batches")
    batch_map = (
        batches.select(
            pl.col("work_order").cast(pl.String), pl.col("batch_id").cast(pl.String).alias("batch")
        ).unique("work_order")
        if batches is not None
        else pl.DataFrame(schema={"work_order": pl.String, "batch": pl.String})
    )
    wo, wo_dead = check_work_orders(work_orders)
    spec, spec_dead = check_spec_limits(spec_limits)
    wo = wo.join(batch_map, on="work_order", how="left").with_columns(pl.col("batch").fill_null(""))
    dead = [d for d in (wo_dead, spec_dead) if d is not None]
    raw = {"work_orders": work_orders, "spec_limits": spec_limits, **records}
    fingerprint = "|".join(f"{name}:{content_hash(frame)}" for name, frame in sorted(raw.items()))
    context = ErpContext(wo, spec, records, raw, fingerprint)
    return context, (pl.concat(dead) if dead else None)


def _rejected_load(report: str) -> pl.DataFrame:
    """One dead letter that records a context load rejected as a whole."""
    reason = "context load rejected (failed its expectation suites); the last good context stays"
    return pl.DataFrame(
        {
            "source": ["context:load"],
            "machine_id": [None],
            "sensor": [None],
            "ts": [None],
            "value": [None],
            "raw": [report],
            "reason": [reason],
        },
        schema={
            "source": pl.String,
            "machine_id": pl.String,
            "sensor": pl.String,
            "ts": TIMESTAMP,
            "value": pl.Float64,
            "raw": pl.String,
            "reason": pl.String,
        },
    ).with_columns(
        dead_letter_id=pl.concat_str(["source", "raw"], separator="|")
        .hash(seed=17)
        .cast(pl.String),
        received_at=pl.lit(datetime.now(tz=UTC)).cast(TIMESTAMP),
    )


def _missing(frame: pl.DataFrame, columns, source: str) -> None:
    absent = [c for c in columns if c not in frame.columns]
    if absent:
        raise ValueError(f"{source}: lacks columns {absent} (has {frame.columns})")


def _strings(frame: pl.DataFrame, schema: dict[str, pl.DataType]) -> pl.DataFrame:
    return frame.select(pl.col(c).cast(pl.String) for c in schema)


def _split(
    frame: pl.DataFrame, reasons: list[tuple[pl.Expr, pl.Expr]], source: str
) -> tuple[pl.DataFrame, pl.DataFrame | None]:
    reason = pl.when(reasons[0][0]).then(reasons[0][1])
    for cond, text in reasons[1:]:
        reason = reason.when(cond).then(text)
    flagged = frame.with_columns(_reason=reason.otherwise(None))
    bad = flagged["_reason"].is_not_null()
    ok = flagged.filter(~bad).drop("_reason")
    if not bad.any():
        return ok, None
    rows = flagged.filter(bad)
    raw_cols = [c for c in rows.columns if c != "_reason" and not c.startswith("_")]
    dead = rows.select(
        pl.lit(source).alias("source"),
        (pl.col("machine_id") if "machine_id" in rows.columns else pl.lit(None))
        .cast(pl.String)
        .alias("machine_id"),
        pl.lit(None, dtype=pl.String).alias("sensor"),
        pl.lit(None, dtype=TIMESTAMP).alias("ts"),
        pl.lit(None, dtype=pl.Float64).alias("value"),
        pl.struct(raw_cols).struct.json_encode().alias("raw"),
        pl.col("_reason").alias("reason"),
    ).with_columns(
        dead_letter_id=pl.concat_str(["source", "raw", "reason"], separator="|")
        .hash(seed=17)
        .cast(pl.String),
        received_at=pl.lit(datetime.now(tz=UTC)).cast(TIMESTAMP),
    )
    return ok, dead


def _time(col: str) -> pl.Expr:
    return pl.col(col).str.to_datetime(time_zone="UTC", strict=False).cast(TIMESTAMP)


def check_work_orders(raw: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame | None]:
    """Valid work orders (typed) and dead letters: missing ids, bad times, duplicates, overlaps.

    Of two orders that overlap on one machine, the one that starts later is rejected: the
    as-of join needs at most one order per machine at any time.
    """
    source = "context:work_orders"
    _missing(raw, WORK_ORDER_SCHEMA, source)
    text = _strings(raw, WORK_ORDER_SCHEMA)
    frame = text.with_columns(_start=_time("start"), _end=_time("end"), _i=pl.int_range(pl.len()))
    empty = [
        (pl.col(c).is_null() | (pl.col(c).str.strip_chars() == ""), pl.lit(f"{c} missing"))
        for c in ("work_order", "machine_id", "product")
    ]
    checks = [
        *empty,
        (pl.col("_start").is_null(), pl.format("start {} is not a time", pl.col("start"))),
        (pl.col("_end").is_null(), pl.format("end {} is not a time", pl.col("end"))),
        (
            pl.col("_end") <= pl.col("_start"),
            pl.format("end {} is not after start {}", pl.col("end"), pl.col("start")),
        ),
        (
            pl.col("_i") != pl.col("_i").min().over("work_order"),
            pl.format("duplicate work order {}", pl.col("work_order")),
        ),
    ]
    ok, dead = _split(frame, checks, source)
    # overlaps among the rows that passed: reject an order that starts before the previous ends
    ok = ok.sort("machine_id", "_start", "_i")
    kept: list[int] = []
    last_end: dict[str, object] = {}
    reasons: dict[int, str] = {}
    for i, machine, start, end, wo in ok.select(
        "_i", "machine_id", "_start", "_end", "work_order"
    ).iter_rows():
        prev = last_end.get(machine)
        if prev is not None and start < prev[0]:
            reasons[i] = f"overlaps work order {prev[1]} on {machine}"
            continue
        kept.append(i)
        last_end[machine] = (end, wo)
    if reasons:
        overlap = ok.filter(pl.col("_i").is_in(list(reasons)))
        _, more = _split(
            overlap.with_columns(_why=pl.col("_i").replace_strict(reasons, return_dtype=pl.String)),
            [(pl.lit(True), pl.col("_why"))],
            source,
        )
        dead = more if dead is None else pl.concat([dead, more])
        ok = ok.filter(pl.col("_i").is_in(kept))
    typed = ok.sort("_i").select(
        "work_order",
        "machine_id",
        "product",
        pl.col("material_lot").fill_null(""),
        pl.col("_start").alias("start"),
        pl.col("_end").alias("end"),
    )
    return typed.cast(WORK_ORDER_SCHEMA), dead


def check_spec_limits(raw: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame | None]:
    """Valid spec limits (typed) and dead letters: missing keys, non-numbers, LSL > target > USL."""
    source = "context:spec_limits"
    _missing(raw, SPEC_SCHEMA, source)
    text = _strings(raw, SPEC_SCHEMA)
    num = {
        c: pl.col(c).str.strip_chars().cast(pl.Float64, strict=False)
        for c in ("lsl", "target", "usl")
    }
    frame = text.with_columns(**{f"_{c}": e for c, e in num.items()}, _i=pl.int_range(pl.len()))
    checks = [
        (pl.col(c).is_null() | (pl.col(c).str.strip_chars() == ""), pl.lit(f"{c} missing"))
        for c in ("product", "characteristic")
    ]
    for c in ("lsl", "target", "usl"):
        checks.append(
            (
                pl.col(f"_{c}").is_null() | ~pl.col(f"_{c}").is_finite(),
                pl.format(f"{c} {{}} is not a finite number", pl.col(c)),
            )
        )
    checks += [
        (
            (pl.col("_lsl") > pl.col("_target")) | (pl.col("_target") > pl.col("_usl")),
            pl.format(
                "limits out of order: lsl {} target {} usl {}",
                pl.col("lsl"),
                pl.col("target"),
                pl.col("usl"),
            ),
        ),
        (
            pl.col("_i") != pl.col("_i").min().over("product", "characteristic"),
            pl.format("duplicate spec {} {}", pl.col("product"), pl.col("characteristic")),
        ),
    ]
    ok, dead = _split(frame, checks, source)
    typed = ok.select(
        "product",
        "characteristic",
        pl.col("_lsl").alias("lsl"),
        pl.col("_target").alias("target"),
        pl.col("_usl").alias("usl"),
    )
    return typed.cast(SPEC_SCHEMA), dead


class ContextStore:
    """The current ERP context, re-read when its source changes.

    The source is a folder of CSV files (``work_orders.csv``, ``spec_limits.csv``, optional
    ``batches.csv``), a DuckDB database file with tables of the same names (the simulator's
    ``erp.duckdb``, or an export of an MES), or a PostgreSQL URL (``postgresql://...``) whose
    tables are re-read at most every ``refresh`` (files are re-read when they change).
    """

    FILES = ("work_orders.csv", "spec_limits.csv")

    def __init__(
        self,
        directory: Path | str,
        refresh: timedelta = timedelta(seconds=5),
        report_first: bool = True,
    ) -> None:
        """``report_first``: judge the first load at once and report its verdict. A cluster
        reports it from one process; the others judge it only when a reload needs the verdict
        (whether the context in use was good), which saves each of them the suites' start-up.
        """
        self.url = str(directory) if str(directory).startswith("postgresql://") else None
        self.directory = Path(directory) if self.url is None else Path()
        self.refresh = refresh
        self._read_at = -math.inf
        self._stamp: tuple[float, ...] | None = None
        self._context = ErpContext.empty()
        self._dead: list[pl.DataFrame] = []
        self._reports: list[ValidationReport] = []
        self._fingerprint: str | None = None
        #: whether the context in use passed its suites (then a failing load is rejected)
        self.good = False
        self.rejected_loads = 0
        self._lock = threading.Lock()
        self._first_verdict: threading.Thread | None = None
        self.report_first = report_first
        self._unjudged: ErpContext | None = None

    @property
    def is_duckdb(self) -> bool:
        return self.directory.suffix == ".duckdb"

    def _files(self) -> list[Path]:
        if self.is_duckdb:
            return [self.directory]
        return [self.directory / f for f in self.FILES]

    def current(self) -> ErpContext:
        if self.url is not None:
            if time.monotonic() - self._read_at >= self.refresh.total_seconds():
                self._read_at = time.monotonic()
                self._use(*load_postgres_context(self.url))
            return self._context
        stamp = tuple(f.stat().st_mtime if f.exists() else -1.0 for f in self._files())
        if stamp != self._stamp and min(stamp) >= 0:
            loader = load_duckdb_context if self.is_duckdb else load_context
            self._use(*loader(self.directory))
            self._stamp = stamp
        return self._context

    def _use(self, loaded: ErpContext, dead: pl.DataFrame | None) -> None:
        """Take a new load, or reject it and keep the last good context."""
        if loaded.fingerprint and loaded.fingerprint == self._fingerprint:
            return  # the same tables again (a polled source): nothing new to check or report
        first = self._fingerprint is None
        self._fingerprint = loaded.fingerprint
        if first:
            # nothing to fall back on: the first load is used whatever its verdict, so it is
            # judged in the background and the pipeline starts at once (importing GX is slow);
            # the suites run in a worker process, this thread only waits for them (GX in a
            # thread here would hold the GIL for seconds and starve the sources' threads)
            self._take(loaded, dead)
            if not self.report_first:
                self._unjudged = loaded
                return
            self._first_verdict = threading.Thread(
                target=self._judge_first, args=(loaded,), name="context-suites", daemon=True
            )
            self._first_verdict.start()
            return
        self._wait_first_verdict()
        reports = validate_context_in_worker(loaded.raw)
        valid = all(r.success for r in reports)
        with self._lock:
            self._reports.extend(reports)
        if not valid and self.good:
            self.rejected_loads += 1
            report = "\n".join(r.report for r in reports if not r.success)
            log.warning("context load rejected, keeping the last good context:\n%s", report)
            self._dead.append(_rejected_load(report))
            return
        if not valid:
            log.warning(
                "context fails its suites and no valid context was loaded before: using the "
                "rows that pass the row checks"
            )
        self._take(loaded, dead)
        self.good = valid

    def _take(self, loaded: ErpContext, dead: pl.DataFrame | None) -> None:
        self._context = loaded
        if dead is not None:
            self._dead.append(dead)

    def _judge_first(self, loaded: ErpContext) -> None:
        reports = validate_context_in_worker(loaded.raw)
        with self._lock:
            self._reports.extend(reports)
        self.good = all(r.success for r in reports)
        if not self.good:
            log.warning(
                "the first context load fails its suites: it stays in use (nothing to fall "
                "back on) until a load that passes arrives"
            )

    def _join_first_verdict(self) -> None:
        if self._first_verdict is not None:
            self._first_verdict.join()
            self._first_verdict = None

    def _wait_first_verdict(self) -> None:
        self._join_first_verdict()
        if self._unjudged is not None:  # judged now, reported by another process
            self.good = all(r.success for r in validate_context_in_worker(self._unjudged.raw))
            self._unjudged = None

    def take_reports(self, wait: bool = False) -> list[ValidationReport]:
        """Validation reports of the loads since the last call (accepted or rejected); with
        ``wait``, after the first load's verdict is in (at the end of a run)."""
        if wait:
            self._join_first_verdict()  # not the deferred judgement: another process reports it
        with self._lock:
            reports, self._reports = self._reports, []
        return reports

    def take_dead(self) -> pl.DataFrame | None:
        """Context rows rejected since the last call (as dead letters), or None."""
        dead, self._dead = self._dead, []
        return pl.concat(dead) if dead else None

    def join(self, readings: pl.DataFrame) -> pl.DataFrame:
        return self.current().join(readings)


class ContextHold:
    """Per machine: hold readings whose context is not known yet, for a bounded event time.

    The rule: a reading with no work order valid at its event time is held, and so is every
    later reading of its machine (their order matters to the windows). Held readings are joined
    again with each new batch, so context that arrives late (a work order booked after the
    machine started) is applied. A held reading is given up once its machine's newest reading
    is ``hold`` (event time) past it: it is released with empty context columns (flagged:
    ``work_order == ''``), never dropped. At the end of input everything held is released.
    One hold serves any number of machines (each with its own clock) in one vectorised pass;
    state is bounded by ``hold`` of each machine's readings.
    """

    def __init__(self, hold: timedelta) -> None:
        self.hold = hold
        self.held: pl.DataFrame | None = None  # raw readings, sorted by time

    def push(self, context: ErpContext, readings: pl.DataFrame) -> pl.DataFrame | None:
        """Joined readings that can go on now (in time order), or None."""
        data = readings if self.held is None else pl.concat([self.held, readings])
        data = _in_time_order(data)
        joined = context.join(data)
        missing = joined["work_order"] == ""
        if not missing.any():
            self.held = None
            return joined
        ts = pl.col("ts")
        # per machine: the first reading that still waits (missing context, within the hold)
        first = (
            pl.when((pl.col("work_order") == "") & (ts >= ts.max().over("machine_id") - self.hold))
            .then(ts)
            .min()
            .over("machine_id")
        )
        marked = joined.with_columns(_first=first)
        waits = pl.col("_first").is_not_null() & (ts >= pl.col("_first"))
        if not marked["_first"].is_not_null().any():
            self.held = None
            return joined  # the missing ones waited long enough: flagged
        self.held = data.filter(marked.select(waits.alias("w"))["w"])
        out = marked.filter(~waits).drop("_first")
        return out if out.height else None

    def flush(self, context: ErpContext) -> pl.DataFrame | None:
        held, self.held = self.held, None
        return None if held is None else context.join(held)


def sensor_units(context: Path) -> dict[str, str]:
    """Sensor -> unit from the context's recipes (``recipes.csv`` or the ``recipes`` table)."""
    context = Path(context)
    if context.suffix == ".duckdb":
        con = duckdb.connect(str(context), read_only=True)
        try:
            if "recipes" not in {r[0] for r in con.sql("SHOW TABLES").fetchall()}:
                return {}
            recipes = con.sql("SELECT parameter, unit FROM recipes").pl()
        finally:
            con.close()
    elif (context / "recipes.csv").exists():
        recipes = pl.read_csv(context / "recipes.csv", columns=["parameter", "unit"])
    else:
        return {}
    pairs = recipes.unique(["parameter", "unit"]).filter(pl.col("unit").is_not_null())
    return dict(pairs.iter_rows())
