"""Great Expectations suites that guard floorsight's data, and the table their results go to.

- :func:`context_suites` builds one suite per ERP context table that is present (products,
  recipes, spec limits, work orders, batches, material lots, genealogy, customer orders,
  maintenance log, lab results): keys unique, spec limits ordered LSL < target < USL, end times
  after start times, foreign keys that resolve to the tables beside them.
- :func:`feature_suite` guards the ``features`` table: keys, ranges, nulls and freshness.
- :func:`validate_context` and :func:`validate_features` run them (pandas frames through an
  ephemeral GX context: GX 1.24 has no polars datasource) and return
  :class:`ValidationReport` s, one per table, whose ``report`` says which rule failed, how
  often, with examples.
- :func:`validate_context_in_worker` runs :func:`validate_context` in a worker process: what
  the pipeline calls, so GX never runs beside its sources.
- :data:`VALIDATION_RESULTS` is the DuckDB table the pipeline and the notebooks store reports
  in; the dashboard shows it.

A foreign key is an ``expect_column_values_to_be_in_set`` whose set is read from the referenced
table of the same load, so a context is checked as one consistent version.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
import importlib.metadata
import json
import logging
import os
import pickle
import signal
import subprocess
import sys
import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl

from floorsight.records import TIMESTAMP
from floorsight.storage import TableSpec

log = logging.getLogger(__name__)

VALIDATION_RESULTS = TableSpec(
    name="validation_results",
    schema=(
        ("validated_at", "TIMESTAMPTZ NOT NULL"),
        ("suite", "VARCHAR NOT NULL"),
        ("table_name", "VARCHAR NOT NULL"),
        ("success", "BOOLEAN NOT NULL"),
        ("evaluated", "INTEGER NOT NULL"),
        ("failed", "INTEGER NOT NULL"),
        ("report", "VARCHAR NOT NULL"),
    ),
    key=("validated_at", "suite", "table_name"),
    update_columns=("success", "evaluated", "failed", "report"),
)

#: Columns parsed as UTC times and as numbers before a table is validated, wherever they occur
#: (CSV and PostgreSQL loads hand some of them over as text; a value that does not parse
#: becomes null, which the not-null expectations report).
TIME_COLUMNS = ("start", "end", "setup_end", "received", "due", "part_made_at", "available_at")
NUMBER_COLUMNS = (
    "lsl",
    "target",
    "usl",
    "setpoint",
    "cycle_time_s",
    "quantity",
    "good_parts",
    "scrap_parts",
    "value",
)

MAINTENANCE_KINDS = ("failure", "repair", "tool_change", "planned_maintenance")


@dataclass(frozen=True)
class Rule:
    """One expectation in floorsight's words: the GX expectation class name and its arguments."""

    expectation: str
    kwargs: dict[str, Any]
    description: str


@dataclass(frozen=True)
class Suite:
    """The rules one table must meet."""

    name: str
    table_name: str
    rules: tuple[Rule, ...]
    #: columns that identify a row in a report (the table's key)
    keys: tuple[str, ...] = ()


@dataclass(frozen=True)
class ValidationReport:
    """The result of one suite on one table: counts and one readable line per failed rule."""

    suite: str
    table_name: str
    success: bool
    evaluated: int
    failed: int
    failures: tuple[str, ...] = ()
    validated_at: datetime = field(default_factory=lambda: datetime.now(tz=UTC))

    @property
    def report(self) -> str:
        head = (
            f"{self.suite} on {self.table_name}: "
            + ("passed" if self.success else f"{self.failed} of {self.evaluated} rules failed")
            + f" ({self.evaluated} checked)"
        )
        return "\n".join([head, *(f"  - {f}" for f in self.failures)])


class DataValidationError(ValueError):
    """Data that failed its suite, raised where such data must not be used (training)."""

    def __init__(self, reports: list[ValidationReport]) -> None:
        self.reports = reports
        super().__init__("\n".join(r.report for r in reports if not r.success))


# ---------------------------------------------------------------- the suites


def _unique(*columns: str) -> Rule:
    if len(columns) == 1:
        return Rule(
            "ExpectColumnValuesToBeUnique", {"column": columns[0]}, f"{columns[0]} is unique"
        )
    return Rule(
        "ExpectCompoundColumnsToBeUnique",
        {"column_list": list(columns)},
        f"({', '.join(columns)}) is unique",
    )


def _not_null(column: str, mostly: float = 1.0) -> Rule:
    text = f"{column} is present" + ("" if mostly == 1.0 else f" in {mostly:.0%} of rows")
    kwargs: dict[str, Any] = {"column": column}
    if mostly != 1.0:
        kwargs["mostly"] = mostly
    return Rule("ExpectColumnValuesToNotBeNull", kwargs, text)


def _after(later: str, earlier: str, or_equal: bool = False) -> Rule:
    return Rule(
        "ExpectColumnPairValuesAToBeGreaterThanB",
        {"column_A": later, "column_B": earlier, "or_equal": or_equal},
        f"{earlier} {'<=' if or_equal else '<'} {later}",
    )


def _between(column: str, low: Any = None, high: Any = None, **extra: Any) -> Rule:
    kwargs = {"column": column, "min_value": low, "max_value": high, **extra}
    return Rule("ExpectColumnValuesToBeBetween", kwargs, f"{column} within [{low}, {high}]")


def _foreign_key(column: str, table: str, key: str, values: pl.Series) -> Rule:
    return Rule(
        "ExpectColumnValuesToBeInSet",
        {"column": column, "value_set": sorted(values.drop_nulls().unique().to_list())},
        f"{column} refers to an existing {table}.{key}",
    )


#: Keys, required columns and time order of every context table (foreign keys come from the
#: tables present, in :func:`context_suites`).
_CONTEXT_RULES: dict[str, list[Rule]] = {
    "products": [_unique("product"), _not_null("product"), _between("cycle_time_s", 0, None)],
    "recipes": [_unique("product", "parameter"), _not_null("setpoint")],
    "spec_limits": [
        _unique("product", "characteristic"),
        *(_not_null(c) for c in ("product", "characteristic", "lsl", "target", "usl")),
        Rule(
            "ExpectColumnPairValuesAToBeGreaterThanB",
            {"column_A": "target", "column_B": "lsl", "or_equal": False},
            "LSL < target",
        ),
        Rule(
            "ExpectColumnPairValuesAToBeGreaterThanB",
            {"column_A": "usl", "column_B": "target", "or_equal": False},
            "target < USL",
        ),
    ],
    "work_orders": [
        _unique("work_order"),
        *(_not_null(c) for c in ("work_order", "machine_id", "product", "start", "end")),
        _after("end", "start"),
    ],
    "batches": [
        _unique("batch_id"),
        _not_null("work_order"),
        _after("end", "start"),
        _after("setup_end", "start", or_equal=True),
        _after("end", "setup_end", or_equal=True),
        _between("good_parts", 0, None),
        _between("scrap_parts", 0, None),
    ],
    "material_lots": [_unique("lot_id"), _not_null("lot_id")],
    "genealogy": [_unique("batch_id", "material_lot")],
    "customer_orders": [_unique("customer_order"), _between("quantity", 0, None)],
    "machines": [_unique("machine_id"), _not_null("line")],
    "shipments": [
        _unique("shipment_id", "batch_id"),
        _not_null("shipped_at"),
        Rule(
            "ExpectColumnValuesToBeInSet",
            {"column": "status", "value_set": ["shipped", "planned"]},
            "status is shipped or planned",
        ),
    ],
    "maintenance_log": [
        _unique("event_id"),
        _not_null("machine_id"),
        Rule(
            "ExpectColumnValuesToBeInSet",
            {"column": "kind", "value_set": list(MAINTENANCE_KINDS)},
            f"kind is one of {', '.join(MAINTENANCE_KINDS)}",
        ),
        _after("end", "start", or_equal=True),
    ],
    "lab_results": [
        _unique("sample_id"),
        _not_null("value"),
        _after("available_at", "part_made_at", or_equal=True),
    ],
}

#: Key columns of each table, named in reports to point at the offending rows.
_KEYS: dict[str, tuple[str, ...]] = {
    "products": ("product",),
    "recipes": ("product", "parameter"),
    "spec_limits": ("product", "characteristic"),
    "work_orders": ("work_order",),
    "batches": ("batch_id",),
    "material_lots": ("lot_id",),
    "genealogy": ("batch_id", "material_lot"),
    "customer_orders": ("customer_order",),
    "machines": ("machine_id",),
    "shipments": ("shipment_id", "batch_id"),
    "maintenance_log": ("event_id",),
    "lab_results": ("sample_id",),
}

#: (table, column) -> (referenced table, its key column)
_FOREIGN_KEYS: dict[tuple[str, str], tuple[str, str]] = {
    ("recipes", "product"): ("products", "product"),
    ("spec_limits", "product"): ("products", "product"),
    ("work_orders", "product"): ("products", "product"),
    ("work_orders", "material_lot"): ("material_lots", "lot_id"),
    ("batches", "work_order"): ("work_orders", "work_order"),
    ("batches", "customer_order"): ("customer_orders", "customer_order"),
    ("genealogy", "batch_id"): ("batches", "batch_id"),
    ("genealogy", "material_lot"): ("material_lots", "lot_id"),
    ("genealogy", "work_order"): ("work_orders", "work_order"),
    ("customer_orders", "product"): ("products", "product"),
    ("shipments", "batch_id"): ("batches", "batch_id"),
    ("shipments", "customer_order"): ("customer_orders", "customer_order"),
    ("maintenance_log", "machine_id"): ("work_orders", "machine_id"),
    ("lab_results", "work_order"): ("work_orders", "work_order"),
    ("lab_results", "product"): ("products", "product"),
}


def context_suites(tables: dict[str, pl.DataFrame]) -> list[Suite]:
    """A suite for every known context table in ``tables``, with the foreign keys it can check."""
    suites = []
    for name, rules in _CONTEXT_RULES.items():
        frame = tables.get(name)
        if frame is None:
            continue
        fks = [
            _foreign_key(column, ref, key, tables[ref][key])
            for (table, column), (ref, key) in _FOREIGN_KEYS.items()
            if table == name
            and column in frame.columns
            and ref in tables
            and key in tables[ref].columns
        ]
        present = [r for r in rules if _columns_of(r) <= set(frame.columns)]
        missing = sorted(set().union(*(_columns_of(r) for r in rules)) - set(frame.columns))
        if missing:
            present.append(
                Rule(
                    "ExpectTableColumnsToMatchSet",
                    {"column_set": missing, "exact_match": False},
                    f"has columns {', '.join(missing)}",
                )
            )
        keys = tuple(c for c in _KEYS[name] if c in frame.columns)
        suites.append(Suite(f"erp.{name}", name, tuple(present + fks), keys))
    return suites


def feature_suite(
    fresh_since: datetime | None = None,
    ranges: dict[str, tuple[float, float]] | None = None,
    mostly_present: float = 0.99,
) -> Suite:
    """The rules of the ``features`` table.

    ``fresh_since``: the newest window must end at or after it (freshness; None skips it).
    ``ranges``: sensor -> (low, high) that a window mean must stay within.
    """
    rules = [
        _unique("machine_id", "sensor", "window_start", "work_order"),
        *(_not_null(c) for c in ("machine_id", "sensor", "window_start", "window_end")),
        _not_null("mean", mostly_present),
        _after("window_end", "window_start"),
        _between("n", 1, None),
        _between("std", 0, None),
        # min <= mean <= max, up to rounding (a constant window's mean may differ in the last
        # bit): checked on the excess columns that validate_features derives
        Rule(
            "ExpectColumnValuesToBeBetween",
            {"column": "mean_above_max", "max_value": 0.0},
            "mean <= max",
        ),
        Rule(
            "ExpectColumnValuesToBeBetween",
            {"column": "mean_below_min", "max_value": 0.0},
            "min <= mean",
        ),
    ]
    for sensor, (low, high) in sorted((ranges or {}).items()):
        rule = _between(
            "mean", low, high, row_condition=f'sensor=="{sensor}"', condition_parser="pandas"
        )
        rules.append(Rule(rule.expectation, rule.kwargs, f"{sensor} mean within [{low}, {high}]"))
    if fresh_since is not None:
        rules.append(
            Rule(
                "ExpectColumnMaxToBeBetween",
                {"column": "window_end", "min_value": fresh_since},
                f"newest window ends at or after {fresh_since.isoformat()}",
            )
        )
    return Suite("features", "features", tuple(rules), ("machine_id", "sensor", "window_start"))


def _columns_of(rule: Rule) -> set[str]:
    k = rule.kwargs
    cols = {k[c] for c in ("column", "column_A", "column_B") if c in k}
    return cols | set(k.get("column_list", []))


# ---------------------------------------------------------------- running them


def typed(frame: pl.DataFrame) -> pl.DataFrame:
    """``frame`` with known time columns as UTC times and number columns as floats."""
    out = []
    for c in frame.columns:
        dtype = frame.schema[c]
        if c in TIME_COLUMNS and dtype == pl.String:
            out.append(pl.col(c).str.to_datetime(time_zone="UTC", strict=False).cast(TIMESTAMP))
        elif c in TIME_COLUMNS and isinstance(dtype, pl.Datetime):
            zone = dtype.time_zone
            col = pl.col(c).dt.replace_time_zone("UTC") if zone is None else pl.col(c)
            out.append(col.dt.convert_time_zone("UTC").cast(TIMESTAMP))
        elif c in NUMBER_COLUMNS and dtype == pl.String:
            out.append(pl.col(c).str.strip_chars().cast(pl.Float64, strict=False))
        else:
            out.append(pl.col(c))
    return frame.select(out)


_gx_lock = threading.RLock()
_gx_state: dict[str, Any] = {}


def _batch_definition(table_name: str):
    """The GX batch definition of ``table_name`` in one process-wide ephemeral context."""
    with _gx_lock:
        if "context" not in _gx_state:
            os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
            # GX logs its set-up at INFO; a pipeline running at INFO would print all of it
            logging.getLogger("great_expectations").setLevel(logging.WARNING)
            import great_expectations as gx
            from great_expectations.data_context.types.base import ProgressBarsConfig

            context = gx.get_context(mode="ephemeral")
            context.variables.progress_bars = ProgressBarsConfig(
                globally=False, metric_calculations=False
            )
            _gx_state["context"] = context
            _gx_state["source"] = context.data_sources.add_pandas("floorsight")
            _gx_state["assets"] = {}
        assets = _gx_state["assets"]
        if table_name not in assets:
            asset = _gx_state["source"].add_dataframe_asset(table_name)
            assets[table_name] = asset.add_batch_definition_whole_dataframe("whole table")
        return assets[table_name]


def validate(frame: pl.DataFrame, suite: Suite) -> ValidationReport:
    """Run ``suite`` on ``frame`` (converted to pandas for GX)."""
    import great_expectations as gx
    import great_expectations.expectations as gxe

    data = typed(frame).to_pandas()
    with _gx_lock:  # one GX context per process, and it is not thread-safe
        definition = _batch_definition(suite.table_name)  # creates the context first
        gx_suite = gx.ExpectationSuite(name=suite.name)
        for rule in suite.rules:
            gx_suite.add_expectation(
                getattr(gxe, rule.expectation)(**rule.kwargs, description=rule.description)
            )
        batch = definition.get_batch(batch_parameters={"dataframe": data})
        result = batch.validate(
            gx_suite,
            result_format={
                "result_format": "SUMMARY",
                "unexpected_index_column_names": list(suite.keys),
            },
        )
    failures = tuple(_failure(r) for r in result.results if not r.success)
    evaluated = len(result.results)
    return ValidationReport(
        suite=suite.name,
        table_name=suite.table_name,
        success=bool(result.success),
        evaluated=evaluated,
        failed=len(failures),
        failures=failures,
    )


def _failure(result) -> str:
    cfg = result.expectation_config
    rule = cfg.description or cfg.type
    if result.exception_info and result.exception_info.get("raised_exception"):
        return f"{rule}: could not be checked ({result.exception_info.get('exception_message')})"
    r = result.result or {}
    if "unexpected_count" in r:
        rows = r.get("partial_unexpected_index_list") or r.get("partial_unexpected_list") or []
        shown: list[str] = []
        for row in rows:
            text = _short(row)
            if text not in shown:
                shown.append(text)
        examples = ", ".join(shown[:3])
        return f"{rule}: {r['unexpected_count']} of {r.get('element_count', '?')} rows break it" + (
            f", e.g. {examples}" if examples else ""
        )
    return f"{rule}: observed {_short(r.get('observed_value'))}"


def _short(value: Any) -> str:
    if isinstance(value, dict):
        return "(" + ", ".join(f"{k}={_short(v)}" for k, v in value.items()) + ")"
    if hasattr(value, "tzinfo") and hasattr(value, "isoformat"):
        return value.isoformat()
    if isinstance(value, list | tuple):
        return "(" + ", ".join(_short(v) for v in value) + ")"
    if hasattr(value, "item"):  # numpy scalars
        value = value.item()
    return str(value)


_context_cache: dict[tuple[str, str], ValidationReport] = {}

#: environment variable: where verdicts of the context suites are kept between runs ("" = don't)
CACHE_ENV = "FLOORSIGHT_CACHE_DIR"


def _verdict_file(key: tuple[str, str]) -> Path | None:
    """The file that keeps the verdict of a (table content, suite) pair across processes.

    Starting GX costs seconds of CPU in every process (a cluster's processes, every restart)
    while the verdict of unchanged tables under unchanged rules cannot change: it is kept on
    disk, keyed by content, rules and the GX version.
    """
    root = os.environ.get(CACHE_ENV)
    if root == "":
        return None
    base = Path(root) if root else Path.home() / ".cache" / "floorsight"
    version = importlib.metadata.version("great_expectations")
    name = hashlib.sha256("|".join((*key, version)).encode()).hexdigest()
    return base / "context-suites" / f"{name}.json"


def _load_verdict(key: tuple[str, str]) -> ValidationReport | None:
    path = _verdict_file(key)
    if path is None or not path.exists():
        return None
    try:
        data = json.loads(path.read_text())
        return ValidationReport(**{**data, "failures": tuple(data["failures"])})
    except (OSError, ValueError, TypeError, KeyError):
        return None  # unreadable: validate again


def _store_verdict(key: tuple[str, str], report: ValidationReport) -> None:
    path = _verdict_file(key)
    if path is None:
        return
    data = {k: v for k, v in asdict(report).items() if k != "validated_at"}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data))
        tmp.replace(path)  # atomic: a concurrent reader sees the old file or the whole new one
    except OSError as err:
        log.warning("could not keep the context suites' verdict in %s: %s", path, err)


def validate_context(tables: dict[str, pl.DataFrame]) -> list[ValidationReport]:
    """Every context suite on its table of this load; FKs are resolved within ``tables``.

    A table whose content and rules (foreign-key sets included) are unchanged since an earlier
    load is not validated again: its earlier result (from this process, or kept on disk by an
    earlier one, see :data:`CACHE_ENV`) is reported with the new time, so a reload that touches
    one table costs one suite and a restart costs none.
    """
    typed_tables = {name: typed(frame) for name, frame in tables.items()}
    reports = []
    for suite in context_suites(typed_tables):
        frame = typed_tables[suite.table_name]
        key = (content_hash(frame), hashlib.sha256(repr(suite).encode()).hexdigest())
        cached = _context_cache.get(key)
        if cached is None:
            if len(_context_cache) >= 256:
                _context_cache.pop(next(iter(_context_cache)))
            cached = _load_verdict(key)
            if cached is None:
                cached = validate(frame, suite)
                _store_verdict(key, cached)
            _context_cache[key] = cached
        reports.append(replace(cached, validated_at=datetime.now(tz=UTC)))
    return reports


class _SuitesWorker:
    """A Python process of its own that runs :func:`validate_context`, started on first use.

    Importing GX and running its suites is seconds of pure Python (thousands of modules). In a
    thread of a streaming process it wants the GIL all the while, and every other thread waits
    for the GIL at each wake-up (up to the 5 ms switch interval): an asyncio loop (an OPC-UA
    client's, a 1 ms sleep took 4-5 ms) runs several times slower and its source misses
    readings. A process of its own shares no GIL; it runs at a lower priority (``nice`` 10), so
    on a busy machine the stream gets the CPU first. It stays for later loads (GX imported
    once, unchanged tables cached) and ends with this process: at the end of its input, and
    when this process dies, even by SIGKILL and while another process holds its pipes (see
    :func:`_die_with_parent`). It is started from a thread that lives as long as this process,
    since Linux sends the parent-death signal when the thread that started a child ends.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._proc: subprocess.Popen | None = None

    def validate(self, tables: dict[str, pl.DataFrame]) -> list[ValidationReport]:
        with self._lock:  # one request at a time on the pipe
            if self._proc is None or self._proc.poll() is not None:
                # the worker imports what this process imports, from where it imports it
                env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
                code = f"from floorsight.features.expectations import _serve; _serve({os.getpid()})"
                self._proc = _spawner.submit(
                    subprocess.Popen,
                    [sys.executable, "-c", code],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    env=env,
                ).result()
            proc = self._proc
            try:
                pickle.dump(tables, proc.stdin)
                proc.stdin.flush()
                ok, result = pickle.load(proc.stdout)
            except (OSError, EOFError, pickle.UnpicklingError) as e:
                proc.kill()
                self._proc = None
                raise RuntimeError(f"the context suites' worker process ended: {e!r}") from e
        if not ok:
            raise RuntimeError(f"the context suites failed in their worker process:\n{result}")
        return result


#: starts the suites worker: a thread that never ends (see :class:`_SuitesWorker`)
_spawner = ThreadPoolExecutor(max_workers=1, thread_name_prefix="suites-worker-start")

#: prctl(2) option: the signal a process gets when its parent dies
_PR_SET_PDEATHSIG = 1


def _die_with_parent(parent: int, poll: float = 1.0) -> None:
    """End this process when process ``parent`` dies, however it dies.

    On Linux the kernel sends SIGKILL at the parent's death (``prctl(PR_SET_PDEATHSIG)``); a
    thread that checks every ``poll`` seconds whether this process was handed to another
    parent is the fallback (other systems, or a libc without ``prctl``). A parent that died
    before this ran is noticed at once.
    """
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
            if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
                log.warning("prctl(PR_SET_PDEATHSIG): %s", os.strerror(ctypes.get_errno()))
        except (OSError, AttributeError) as err:
            log.warning("no parent-death signal for the suites worker: %s", err)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(poll)
        os._exit(1)

    if os.getppid() != parent:
        os._exit(1)
    threading.Thread(target=watch, name="parent-watchdog", daemon=True).start()


def _serve(parent: int | None = None) -> None:
    """The worker's loop: pickled tables in on stdin, ``(ok, reports | traceback)`` out; it
    ends with process ``parent`` (see :func:`_die_with_parent`)."""
    if parent is not None:
        _die_with_parent(parent)
    os.nice(10)
    replies = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # whatever GX prints goes to stderr, not into the replies
    while True:
        try:
            tables = pickle.load(sys.stdin.buffer)
        except EOFError:
            return
        try:
            reply = (True, validate_context(tables))
        except Exception:
            reply = (False, traceback.format_exc())
        pickle.dump(reply, replies)
        replies.flush()


_worker = _SuitesWorker()


def validate_context_in_worker(tables: dict[str, pl.DataFrame]) -> list[ValidationReport]:
    """:func:`validate_context` in this process's suites worker (see :class:`_SuitesWorker`):
    for a process that must stay responsive while the suites run (the pipeline)."""
    return _worker.validate(tables)


def validate_features(
    features: pl.DataFrame,
    fresh_since: datetime | None = None,
    ranges: dict[str, tuple[float, float]] | None = None,
) -> ValidationReport:
    """The feature suite on a ``features`` frame."""
    return validate(with_excess(features), feature_suite(fresh_since, ranges))


def with_excess(features: pl.DataFrame, rel: float = 1e-9) -> pl.DataFrame:
    """``features`` with how far each mean lies above its max / below its min, beyond rounding."""
    slack = rel * pl.max_horizontal(pl.col("mean").abs(), pl.lit(1.0))
    return features.with_columns(
        mean_above_max=pl.col("mean") - pl.col("max") - slack,
        mean_below_min=pl.col("min") - pl.col("mean") - slack,
    )


def content_hash(frame: pl.DataFrame) -> str:
    """SHA-256 of a frame's columns and rows as CSV: equal content, equal hash (data provenance).

    >>> content_hash(pl.DataFrame({"a": [1, 2]})) == content_hash(pl.DataFrame({"a": [1, 2]}))
    True
    """
    digest = hashlib.sha256()
    digest.update(repr(list(frame.schema.items())).encode())
    digest.update(frame.write_csv().encode())
    return digest.hexdigest()


def require_valid(reports: list[ValidationReport]) -> None:
    """Raise :class:`DataValidationError` unless every report passed."""
    if not all(r.success for r in reports):
        raise DataValidationError(reports)


def reports_frame(reports: list[ValidationReport]) -> pl.DataFrame:
    """Reports as rows of :data:`VALIDATION_RESULTS`."""
    return pl.DataFrame(
        [
            {
                "validated_at": r.validated_at,
                "suite": r.suite,
                "table_name": r.table_name,
                "success": r.success,
                "evaluated": r.evaluated,
                "failed": r.failed,
                "report": r.report,
            }
            for r in reports
        ],
        schema={
            "validated_at": TIMESTAMP,
            "suite": pl.String,
            "table_name": pl.String,
            "success": pl.Boolean,
            "evaluated": pl.Int32,
            "failed": pl.Int32,
            "report": pl.String,
        },
    )


__all__ = [
    "VALIDATION_RESULTS",
    "DataValidationError",
    "Rule",
    "Suite",
    "ValidationReport",
    "content_hash",
    "context_suites",
    "feature_suite",
    "reports_frame",
    "require_valid",
    "typed",
    "validate",
    "validate_context",
    "validate_context_in_worker",
    "validate_features",
]
