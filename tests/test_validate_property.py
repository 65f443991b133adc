"""Property tests: malformed readings and context rows are dead-lettered, never crash, never lose
the valid rows around them.

Hypothesis draws thousands of records of every JSON-ish shape (wrong types, missing fields, NaN,
infinities, naive and absurd timestamps, empty strings) mixed with valid ones.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta

import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from floorsight.pipelines.context import check_spec_limits, check_work_orders
from floorsight.pipelines.validate import (
    ID_PATTERN,
    ReadingRules,
    parse_records,
    validate_readings,
)
from tests.conftest import T0

NOW = T0
RULES = ReadingRules(
    max_future=timedelta(days=1),
    max_past=timedelta(days=30),
    known_machines=frozenset({"M01", "M02"}),
    ranges={"temp_c": (-50.0, 400.0)},
)
anything = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=5,
)
timestamps = st.one_of(
    st.datetimes(timezones=st.just(UTC)).map(lambda d: d.isoformat()),
    st.datetimes().map(lambda d: d.isoformat()),  # naive
    st.text(max_size=12),
    st.datetimes(
        min_value=datetime(2025, 12, 1), max_value=datetime(2026, 2, 1), timezones=st.just(UTC)
    ),
    anything,
)
values = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(),
    st.sampled_from([1.7e308, -1.7e308, 2e15, 10**400]),
    st.text(max_size=5),
    anything,
)
malformed = st.one_of(
    st.fixed_dictionaries(
        {
            "machine_id": st.one_of(st.sampled_from(["M01", "M02", "M99", ""]), anything),
            "sensor": st.one_of(st.sampled_from(["temp_c", "", " ", "a\x00", "p/#"]), anything),
            "ts": timestamps,
            "value": values,
        }
    ),
    st.dictionaries(st.sampled_from(["machine_id", "sensor", "ts", "value", "x"]), anything),
    anything,
)
valid = st.builds(
    lambda m, s, v: {
        "machine_id": m,
        "sensor": "temp_c",
        "ts": (T0 - timedelta(seconds=s)).isoformat(),
        "value": v,
    },
    st.sampled_from(["M01", "M02"]),
    st.integers(0, 86_400),
    st.floats(-50.0, 400.0),
)


def _is_valid(record) -> bool:
    """The oracle: an independent statement of the rules, for records drawn as malformed."""
    if not isinstance(record, dict):
        return False
    m, s, ts, v = (record.get(k) for k in ("machine_id", "sensor", "ts", "value"))
    if not isinstance(m, str) or m not in RULES.known_machines:
        return False
    if not isinstance(s, str) or not re.fullmatch(ID_PATTERN, s):
        return False
    if isinstance(ts, str):
        try:
            ts = datetime.fromisoformat(ts)
        except ValueError:
            return False
    if not isinstance(ts, datetime) or ts.tzinfo is None:
        return False
    if not NOW - RULES.max_past <= ts <= NOW + RULES.max_future:
        return False
    if not datetime(1970, 1, 1, tzinfo=UTC) <= ts < datetime(2100, 1, 1, tzinfo=UTC):
        return False
    if isinstance(v, bool) or not isinstance(v, int | float):
        return False
    try:
        v = float(v)
    except OverflowError:
        return False
    if not math.isfinite(v):
        return False
    low, high = RULES.ranges.get(s, (-1e15, 1e15))
    return low <= v <= high


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.booleans(), valid, malformed), min_size=1, max_size=40))
def test_every_malformed_reading_is_dead_lettered_and_the_valid_ones_arrive(pairs) -> None:
    records = [v if use_valid else m for use_valid, v, m in pairs]
    parsed = parse_records(records, "mqtt")
    checked = validate_readings(parsed.ok, RULES, source="mqtt", now=NOW)
    dead = [d for d in (parsed.dead, checked.dead) if d is not None]
    n_dead = sum(d.height for d in dead)
    # nothing lost, nothing doubled
    assert checked.ok.height + n_dead == len(records)
    for d in dead:
        assert d["reason"].null_count() == 0 and (d["reason"].str.len_chars() > 0).all()
        assert d["raw"].null_count() == 0
    # exactly the valid records arrive, in order
    expected = [r for r in records if _is_valid(r)]
    assert checked.ok.height == len(expected)
    assert checked.ok["value"].to_list() == [float(r["value"]) for r in expected]


work_order_rows = st.fixed_dictionaries(
    {
        "work_order": st.one_of(st.sampled_from(["WO-1", "WO-2", "WO-3", ""]), st.text(max_size=4)),
        "machine_id": st.sampled_from(["M01", "M02", ""]),
        "product": st.sampled_from(["P-1", ""]),
        "material_lot": st.sampled_from(["L-1", ""]),
        "start": st.one_of(
            st.integers(0, 48).map(lambda h: (T0 + timedelta(hours=h)).isoformat()),
            st.text(max_size=6),
        ),
        "end": st.one_of(
            st.integers(0, 48).map(lambda h: (T0 + timedelta(hours=h)).isoformat()),
            st.text(max_size=6),
        ),
    }
)


@settings(max_examples=300, deadline=None)
@given(st.lists(work_order_rows, max_size=25))
def test_context_rows_are_checked_and_never_crash(rows) -> None:
    raw = pl.DataFrame(
        rows,
        schema=dict.fromkeys(
            ("work_order", "machine_id", "product", "material_lot", "start", "end"), pl.String
        ),
    )
    ok, dead = check_work_orders(raw)
    assert ok.height + (dead.height if dead is not None else 0) == len(rows)
    if dead is not None:
        assert (dead["reason"].str.len_chars() > 0).all()
        assert dead["source"].unique().to_list() == ["context:work_orders"]
    # what is kept is a usable context: unique ids, end after start, no overlap per machine
    assert ok["work_order"].n_unique() == ok.height
    assert (ok["end"] > ok["start"]).all()
    for _, part in ok.sort("start").group_by("machine_id"):
        assert (part["start"].slice(1) >= part["end"].slice(0, part.height - 1)).all()


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.fixed_dictionaries(
            {
                "product": st.sampled_from(["P-1", "P-2", ""]),
                "characteristic": st.sampled_from(["bore", ""]),
                "lsl": st.one_of(st.floats(allow_nan=True).map(str), st.text(max_size=4)),
                "target": st.one_of(st.floats(allow_nan=True).map(str), st.text(max_size=4)),
                "usl": st.one_of(st.floats(allow_nan=True).map(str), st.text(max_size=4)),
            }
        ),
        max_size=20,
    )
)
def test_spec_rows_are_checked_and_never_crash(rows) -> None:
    raw = pl.DataFrame(
        rows, schema=dict.fromkeys(("product", "characteristic", "lsl", "target", "usl"), pl.String)
    )
    ok, dead = check_spec_limits(raw)
    assert ok.height + (dead.height if dead is not None else 0) == len(rows)
    assert ((ok["lsl"] <= ok["target"]) & (ok["target"] <= ok["usl"])).all()
    assert ok.select("product", "characteristic").is_unique().all()
