"""Fuzzing the context files (hypothesis, bounded): random and mutated ``work_orders.csv`` and
``spec_limits.csv`` (bad cells, missing columns, truncated files, random bytes, NUL, lone
surrogates) through :func:`parse_context` / :func:`load_context` and a :class:`ContextStore`.

What must hold: nothing but the documented :class:`ContextLoadError` escapes; every row read is
either in the context or a dead letter with its row; the context holds only rows that pass the
rules; a reload replaces the context whole (every row of the new files) or keeps the last good
one.
"""

from __future__ import annotations

import math
import os
from datetime import timedelta

import polars as pl
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from floorsight.pipelines.context import (
    ContextLoadError,
    ContextStore,
    ErpContext,
    load_context,
    parse_context,
)
from floorsight.pipelines.validate import ID_PATTERN, MAX_ID_CHARS

WO_HEADER = ["work_order", "machine_id", "product", "material_lot", "start", "end"]
WO_ROWS = [
    ["WO-1", "M1", "P-100", "L1", "2026-01-05T06:00:00Z", "2026-01-05T08:00:00Z"],
    ["WO-2", "M1", "P-200", "L2", "2026-01-05T08:00:00Z", "2026-01-05T10:00:00Z"],
    ["WO-3", "M2", "P-100", "L3", "2026-01-05T06:00:00Z", "2026-01-05T10:00:00Z"],
    ["WO-4", "M3", "P-200", "", "2026-01-05T07:00:00Z", "2026-01-05T09:30:00Z"],
]
SPEC_HEADER = ["product", "characteristic", "lsl", "target", "usl"]
SPEC_ROWS = [
    ["P-100", "bore", "24.98", "25.0", "25.02"],
    ["P-200", "bore", "9", "10", "11"],
    ["P-200", "temp", "60", "65", "70"],
]

#: cells that break something (or look as if they might)
NASTY = [
    "",
    " ",
    "\x00",
    "WO-1",
    "NaN",
    "inf",
    "-inf",
    "1e309",
    "-1.8e308",
    "1" * 400,
    "2026-13-45T00:00:00Z",
    "2026-01-05T06:00:00",
    "2120-01-01T00:00:00Z",
    "1969-12-31T23:59:59Z",
    "yesterday",
    '"',
    '"a,b"',
    "a\nb",
    "\ud800",
    "\udfff x",
    "é",
    "٣",
    "\r",
]
cells = st.one_of(
    st.sampled_from(NASTY),
    st.text(st.characters(codec=None, exclude_categories=()), max_size=12),
)


def _csv(rows: list[list[str]]) -> bytes:
    text = "\n".join(",".join(row) for row in rows) + "\n"
    return text.encode("utf-8", "surrogatepass")  # a lone surrogate: invalid UTF-8 on disk


@st.composite
def mutated(draw, header: list[str], rows: list[list[str]], clean: bool = False) -> bytes:
    """A context file: the good one (some of its rows) with a few mutations, or random bytes;
    with ``clean``, some of the good rows only."""
    kept = draw(st.sets(st.integers(0, len(rows) - 1), min_size=1))
    table = [list(header)] + [list(r) for i, r in enumerate(rows) if i in kept]
    if clean:
        return _csv(table)
    if draw(st.integers(0, 14)) == 0:
        return draw(st.binary(max_size=200))
    for _ in range(draw(st.sampled_from([1, 1, 1, 2, 3]))):
        kind = draw(
            st.sampled_from(["cell", "cell", "cell", "drop column", "header", "dup row", "row"])
        )
        width = len(table[0])
        if kind == "cell" and len(table) > 1 and width:
            r, c = draw(st.integers(1, len(table) - 1)), draw(st.integers(0, width - 1))
            if c < len(table[r]):
                table[r][c] = draw(cells)
        elif kind == "drop column" and width:
            c = draw(st.integers(0, width - 1))
            table = [[x for i, x in enumerate(row) if i != c] for row in table]
        elif kind == "header" and width:
            table[0][draw(st.integers(0, width - 1))] = draw(cells)
        elif kind == "dup row" and len(table) > 1:
            table.append(list(table[draw(st.integers(1, len(table) - 1))]))
        elif kind == "row":
            table.append([draw(cells) for _ in range(draw(st.integers(0, width + 1)))])
    data = _csv(table)
    if draw(st.integers(0, 5)) == 0:  # a writer that stopped half-way
        data = data[: draw(st.integers(0, len(data)))]
    if draw(st.integers(0, 9)) == 0:
        data += draw(st.binary(max_size=20))
    return data


@st.composite
def files(draw) -> dict[str, bytes]:
    """Both context files: one of them mutated, both, or neither."""
    bad = draw(st.sampled_from(["work_orders.csv", "spec_limits.csv", "both", "neither"]))
    return {
        "work_orders.csv": draw(mutated(WO_HEADER, WO_ROWS, bad in ("spec_limits.csv", "neither"))),
        "spec_limits.csv": draw(
            mutated(SPEC_HEADER, SPEC_ROWS, bad in ("work_orders.csv", "neither"))
        ),
    }


def _check_taken(ctx: ErpContext, dead: pl.DataFrame | None) -> None:
    """Every row read is accounted for, and the context holds only valid rows."""
    dead_by = (
        {}
        if dead is None
        else dict(dead.group_by("source").len().select("source", "len").iter_rows())
    )
    assert set(dead_by) <= {"context:work_orders", "context:spec_limits"}
    assert len(ctx.problems) == (0 if dead is None else dead.height)
    assert all(p.row is not None and p.rule for p in ctx.problems)
    assert ctx.raw["work_orders"].height == ctx.work_orders.height + dead_by.get(
        "context:work_orders", 0
    )
    assert ctx.raw["spec_limits"].height == ctx.spec_limits.height + dead_by.get(
        "context:spec_limits", 0
    )
    wo, spec = ctx.work_orders, ctx.spec_limits
    assert wo["machine_id"].str.contains(f"^(?:{ID_PATTERN})$").all()
    for frame, ids in ((wo, ("work_order", "product", "material_lot")), (spec, SPEC_HEADER[:2])):
        for column in ids:
            assert not frame[column].str.contains(r"[\x00-\x1f\x7f]").any()
            assert (frame[column].str.len_chars() <= MAX_ID_CHARS).all()
    required = wo.select("work_order", "machine_id", "product", "start", "end")
    assert required.null_count().sum_horizontal().item() == 0
    assert (wo["end"] > wo["start"]).all()
    assert wo["work_order"].is_unique().all()
    assert spec.select("lsl", "target", "usl").null_count().sum_horizontal().item() == 0
    for lsl, target, usl in spec.select("lsl", "target", "usl").iter_rows():
        assert math.isfinite(lsl) and lsl <= target <= usl <= math.inf
    assert spec.select("product", "characteristic").is_unique().all()


@settings(max_examples=300, deadline=None)
@given(files())
def test_parse_context_takes_valid_rows_or_rejects_clearly(data) -> None:
    try:
        ctx, dead = parse_context(data)
    except ContextLoadError as err:
        event("rejected as a file")
        assert err.problems and all(p.source and p.rule for p in err.problems)
        assert any(name in str(err) for name in data)  # the message names the file
        return
    event("rows dead-lettered" if dead is not None else "every row valid")
    _check_taken(ctx, dead)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=files())
def test_load_context_reads_files_from_disk_the_same_way(tmp_path, data) -> None:
    for name, content in data.items():
        (tmp_path / name).write_bytes(content)
    try:
        expected = parse_context(data)
    except ContextLoadError as err:
        try:
            load_context(tmp_path)
        except ContextLoadError as again:
            assert str(again) == str(err)
        else:
            raise AssertionError("load_context took files parse_context rejects")
        return
    ctx, dead = load_context(tmp_path)
    assert ctx.fingerprint == expected[0].fingerprint
    _check_taken(ctx, dead)


class _Reloads:
    """A context folder with a good first load in use, and a way to replace its files."""

    def __init__(self, directory) -> None:
        self.directory = directory
        self.mtime = 1_800_000_000
        self.write({"work_orders.csv": _csv([WO_HEADER, *WO_ROWS])})
        self.write({"spec_limits.csv": _csv([SPEC_HEADER, *SPEC_ROWS])})
        self.store = ContextStore(directory, settle=timedelta(0))
        self.good = self.store.current()

    def write(self, data: dict[str, bytes]) -> None:
        for name, content in data.items():
            path = self.directory / name
            path.write_bytes(content)
            self.mtime += 1  # a new time for every version: the store sees every change
            os.utime(path, ns=(self.mtime * 10**9, self.mtime * 10**9))


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=files())
def test_a_reload_replaces_the_context_whole_or_keeps_the_last_good_one(tmp_path, data) -> None:
    folder = tmp_path / f"erp-{os.urandom(4).hex()}"
    folder.mkdir()
    reloads = _Reloads(folder)
    store, good = reloads.store, reloads.good
    reloads.write(data)
    rejected = store.rejected_loads
    ctx = store.current()  # no exception, whatever the files hold
    event("kept the last good context" if ctx is good else "taken whole")
    if ctx is good:
        try:
            parsed, _ = parse_context(data)
        except ContextLoadError:
            assert store.rejected_loads == rejected + 1
            return
        if parsed.fingerprint != good.fingerprint:
            assert store.rejected_loads == rejected + 1  # rows or suites failed: recorded
            failed = [r for r in store.take_reports() if not r.success]
            assert any(r.suite == "erp.load" for r in failed)
        return
    # taken: whole, exactly the new files, and only if nothing in them broke a rule
    parsed, dead = parse_context(data)
    assert dead is None and not parsed.problems
    assert ctx.fingerprint == parsed.fingerprint
    assert ctx.work_orders.equals(parsed.work_orders)
    assert ctx.spec_limits.equals(parsed.spec_limits)
    assert store.rejected_loads == rejected
    _check_taken(ctx, dead)


MAP = b"""
time_zone = "Europe/Berlin"
[tables.work_orders]
file = "AUFK.csv"
delimiter = ";"
encoding = "cp1252"
columns = { work_order = "WORK_ORDER", machine_id = "MACHINE_ID", product = "PRODUCT" }
[tables.spec_limits]
file = "QPMK.csv"
delimiter = ";"
decimal = ","
columns = { lsl = "UGW", target = "SOLL", usl = "OGW" }
"""


@st.composite
def sap_exports(draw) -> dict[str, bytes]:
    """An SAP-like export of both tables (';', German column names, decimal comma, cp1252),
    one of them mutated, both, or neither."""
    bad = draw(st.sampled_from(["work_orders", "spec_limits", "both", "neither"]))
    wo_header = [
        c.upper() if c in ("work_order", "machine_id", "product") else c for c in WO_HEADER
    ]
    spec_header = ["product", "characteristic", "UGW", "SOLL", "OGW"]
    wo = draw(mutated(wo_header, WO_ROWS, bad in ("spec_limits", "neither")))
    spec = draw(mutated(spec_header, SPEC_ROWS, bad in ("work_orders", "neither")))
    return {
        "AUFK.csv": wo.replace(b",", b";"),
        "QPMK.csv": spec.replace(b",", b";").replace(b".", b","),
    }


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=sap_exports())
def test_a_mapped_export_is_taken_row_by_row_or_rejected_clearly(tmp_path, data) -> None:
    from floorsight.pipelines.context_map import load_mapped_context

    folder = tmp_path / f"erp-{os.urandom(4).hex()}"
    folder.mkdir()
    (folder / "map.toml").write_bytes(MAP)
    for name, content in data.items():
        (folder / name).write_bytes(content)
    try:
        ctx, dead = load_mapped_context(folder / "map.toml")
    except ContextLoadError as err:
        event("rejected as a file")
        assert err.problems and all(p.source and p.rule for p in err.problems)
        return
    event("rows dead-lettered" if dead is not None else "every row valid")
    _check_taken(ctx, dead)
