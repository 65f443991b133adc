"""What every dashboard page shares: the database, the refresh rate, filters and paged tables.

Each page reads the database in one short read-only snapshot per refresh (:func:`snapshot`):
open, run the page's parameterised queries, close, and only then compute and draw, so the
pipeline's writer is never kept waiting by a chart. A snapshot that meets the writer's lock
waits and retries (``floorsight.storage``), so a page never shows a lock error.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path

import duckdb
import polars as pl
import streamlit as st

from floorsight.dashboards.oee import ShiftPlan
from floorsight.dashboards.oee import shift_plan as parse_shift_plan
from floorsight.dashboards.users import users_file
from floorsight.storage import Database

#: How often the live parts of a page re-read the database. Windows close every 10 s by
#: default, so a faster refresh would mostly redraw the same numbers, and on a small machine it
#: would take CPU from the pipeline.
REFRESH = "5s"
#: Pages whose refresh computes more (drift statistics, control charts) refresh less often.
SLOW_REFRESH = "15s"
#: Rows per page of a paged table.
PAGE_ROWS = 25

#: Time ranges offered by the pages' filters, back from the plant's latest window (event time).
TIME_RANGES: dict[str, timedelta | None] = {
    "last 1 h": timedelta(hours=1),
    "last 8 h": timedelta(hours=8),
    "last 24 h": timedelta(hours=24),
    "last 7 days": timedelta(days=7),
    "everything": None,
}


def _args() -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", default=os.environ.get("FLOORSIGHT_DB", "var/floorsight.duckdb"))
    parser.add_argument("--mlflow", default=os.environ.get("MLFLOW_TRACKING_URI"))
    parser.add_argument("--users", default=None)
    parser.add_argument("--shift-start", action="append", default=None)
    parser.add_argument("--shift-hours", type=float, default=None)
    args, _ = parser.parse_known_args(sys.argv[1:])
    return args


def shift_plan() -> ShiftPlan:
    """The plant's shifts the app was started with (``--shift-start``, ``--shift-hours``;
    ``floorsight dashboard`` checked them), else three of 8 hours from 06:00 UTC."""
    args, default = _args(), ShiftPlan()
    if args.shift_start is None and args.shift_hours is None:
        return default
    starts = args.shift_start or default.start_times
    hours = args.shift_hours or default.length.total_seconds() / 3600
    return parse_shift_plan(starts, hours)


def database() -> Database:
    """The database the app was started on (``--db PATH`` or ``FLOORSIGHT_DB``)."""
    return Database(Path(_args().db))


def users_path() -> Path:
    """The users file the app signs people in with (``--users``, ``FLOORSIGHT_DASHBOARD_USERS``,
    or ``dashboard_users.yaml`` in the floorsight home)."""
    return users_file(_args().users)


#: every ASCII punctuation character: CommonMark shows any of them literally when escaped
_PUNCTUATION = re.compile(r"([!-/:-@\[-`{-~])")


def literal(text: object) -> str:
    """``text`` escaped for Markdown, so it shows as the characters it has.

    Machine ids, work orders, reasons and evidence come from machines and the ERP, not from us:
    through ``st.markdown`` (and ``st.subheader``, ``st.caption``, ``st.success`` ..., which
    all render Markdown) a machine id like ``[docs](http://x)`` would be a link and
    ``![](http://x/t.png)`` an image fetched by every browser that opens the page. Every
    punctuation character is backslash-escaped (HTML tags, links, emphasis, math, directives
    all start with one) and line breaks become spaces (no new block can start).
    """
    return _PUNCTUATION.sub(r"\\\1", " ".join(str(text).splitlines()))


def mlflow_uri() -> str | None:
    """MLflow tracking URI: ``--mlflow``, ``MLFLOW_TRACKING_URI``, or ``mlflow.db`` beside the
    database (where ``floorsight`` keeps its local MLflow store), if that file exists."""
    uri = _args().mlflow
    if uri:
        return uri
    local = database().path.with_name("mlflow.db")
    return f"sqlite:///{local}" if local.exists() else None


class FileAccess:
    """Many readers or one writer at a time, within this process.

    The app serves every browser session from one process, and DuckDB refuses to open a file
    read-write in a process that has it open read-only (and the other way round): "Can't open a
    connection to same database file with a different configuration". So page refreshes share
    the file with each other, and an alert action waits until they are done (and new refreshes
    wait for the action: a writer is not starved). Across processes, the file lock and
    ``floorsight.storage``'s retry do the same job.
    """

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self.readers = 0
        self.writing = False
        self.waiting_writers = 0

    @contextmanager
    def read(self) -> Iterator[None]:
        with self._changed:
            self._changed.wait_for(lambda: not self.writing and not self.waiting_writers)
            self.readers += 1
        try:
            yield
        finally:
            with self._changed:
                self.readers -= 1
                self._changed.notify_all()

    @contextmanager
    def write(self) -> Iterator[None]:
        with self._changed:
            self.waiting_writers += 1
            self._changed.wait_for(lambda: not self.writing and not self.readers)
            self.waiting_writers -= 1
            self.writing = True
        try:
            yield
        finally:
            with self._changed:
                self.writing = False
                self._changed.notify_all()


#: the one gate to the database file for every session of this app process
FILE_ACCESS = FileAccess()


@contextmanager
def snapshot(db: Database) -> Iterator[duckdb.DuckDBPyConnection]:
    """One read-only connection for one refresh of a page."""
    with FILE_ACCESS.read(), db.read() as con:
        yield con


def has_table(con: duckdb.DuckDBPyConnection, name: str) -> bool:
    rows = con.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE schema_name = 'main' AND table_name = ?",
        [name],
    ).fetchall()
    return rows[0][0] > 0


def frame(con: duckdb.DuckDBPyConnection, sql: str, params: list | None = None) -> pl.DataFrame:
    """A parameterised query as a polars frame (times in UTC)."""
    return con.sql(sql, params=params).pl() if params else con.sql(sql).pl()


def waiting_for(db: Database) -> bool:
    """Say so and return True while the pipeline has not created the database yet."""
    if db.exists():
        return False
    st.info(f"Waiting for the pipeline to create {literal(db.path)} ...")
    return True


def since(now: datetime | None, label: str) -> datetime | None:
    """Start of the time range ``label`` (see :data:`TIME_RANGES`) ending at ``now``."""
    span = TIME_RANGES[label]
    return None if now is None or span is None else now - span


def time_range(column, key: str, default: str = "last 8 h") -> str:
    options = list(TIME_RANGES)
    return column.selectbox("Time range", options, index=options.index(default), key=key)


def page_number(total: int, key: str, rows: int = PAGE_ROWS) -> int:
    """A page picker for a table of ``total`` rows; returns the offset of the chosen page."""
    pages = max(1, math.ceil(total / rows))
    if pages == 1:
        return 0
    page = st.pagination(pages, key=key)
    st.caption(f"page {page} of {pages} · {total} rows")
    return (page - 1) * rows


def paged_table(
    db: Database,
    count: Callable[[duckdb.DuckDBPyConnection], int],
    rows: Callable[[duckdb.DuckDBPyConnection, int, int], pl.DataFrame],
    key: str,
    empty: str,
) -> pl.DataFrame:
    """Count the rows, pick a page, read only that page (``LIMIT``/``OFFSET``) and show it."""
    with snapshot(db) as con:
        total = count(con)
    offset = page_number(total, key)
    with snapshot(db) as con:
        shown = rows(con, PAGE_ROWS, offset)
    if shown.height:
        st.dataframe(shown, hide_index=True, width="stretch")
    else:
        st.write(empty)
    return shown


def show_page_of(rows: pl.DataFrame, page_key: str, empty: str, **kwargs) -> None:
    """Show a computed frame one page at a time (for tables built in Python, not SQL)."""
    offset = page_number(rows.height, page_key)
    if rows.height:
        st.dataframe(rows.slice(offset, PAGE_ROWS), hide_index=True, width="stretch", **kwargs)
    else:
        st.write(empty)
