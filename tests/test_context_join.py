"""The as-of join gives each reading the work order valid at its own event time."""

from __future__ import annotations

import os
import time
from datetime import timedelta

import polars as pl
import pytest

from floorsight.pipelines.context import (
    SPEC_SCHEMA,
    WORK_ORDER_SCHEMA,
    ContextLoadError,
    ContextStore,
    ErpContext,
    load_context,
)
from tests.conftest import T0, readings


def _orders() -> pl.DataFrame:
    h = timedelta(hours=1)
    return pl.DataFrame(
        {
            "work_order": ["WO-1", "WO-2", "WO-9"],
            "machine_id": ["M1", "M1", "M2"],
            "product": ["P-100", "P-200", "P-100"],
            "material_lot": ["LOT-A", "LOT-B", "LOT-Z"],
            "start": [T0, T0 + h, T0],
            "end": [T0 + h, T0 + 2 * h, T0 + 2 * h],
        },
        schema=WORK_ORDER_SCHEMA,
    )


def test_changeover_switches_work_order_at_event_time() -> None:
    ctx = ErpContext(_orders(), pl.DataFrame(schema=SPEC_SCHEMA))
    r = readings(
        [
            ("M1", "t", 3599.9, 1.0),  # last moment of WO-1
            ("M1", "t", 3600.0, 2.0),  # changeover instant belongs to WO-2
            ("M2", "t", 3600.0, 3.0),  # other machine keeps its own order
            ("M1", "t", 7200.0, 4.0),  # after the last order ended: no context
            ("M1", "t", -1.0, 5.0),  # before the first order: no context
        ]
    )
    out = ctx.join(r).sort("value")
    assert out["work_order"].to_list() == ["WO-1", "WO-2", "WO-9", "", ""]
    assert out["product"].to_list() == ["P-100", "P-200", "P-100", "", ""]
    assert out["material_lot"].to_list() == ["LOT-A", "LOT-B", "LOT-Z", "", ""]
    assert out.height == r.height


def test_join_uses_event_time_not_arrival_order() -> None:
    # a late reading from the first order arrives after readings of the second one
    ctx = ErpContext(_orders(), pl.DataFrame(schema=SPEC_SCHEMA))
    r = readings([("M1", "t", 4000.0, 1.0), ("M1", "t", 100.0, 2.0)])
    out = ctx.join(r).sort("value")
    assert out["work_order"].to_list() == ["WO-2", "WO-1"]


def test_context_store_picks_up_new_work_orders_without_restart(tmp_path) -> None:
    orders = _orders()
    orders.head(1).write_csv(tmp_path / "work_orders.csv")
    pl.DataFrame(
        {"product": ["P-100"], "characteristic": ["t"], "lsl": [0.0], "target": [1.0], "usl": [2.0]}
    ).write_csv(tmp_path / "spec_limits.csv")
    store = ContextStore(tmp_path)
    r = readings([("M1", "t", 4000.0, 1.0)])
    assert store.join(r)["work_order"].to_list() == [""]
    orders.write_csv(tmp_path / "work_orders.csv")
    later = time.time() + 5  # make the change visible even on coarse mtime clocks
    os.utime(tmp_path / "work_orders.csv", (later, later))
    assert store.join(r)["work_order"].to_list() == ["WO-2"]


def test_bad_context_rows_are_dead_lettered_with_their_reason(tmp_path) -> None:
    """Each bad row is named with its rule; such a load is not used (here a first load: the
    start is refused naming the file, the line and the rule of each)."""
    (tmp_path / "work_orders.csv").write_text(
        "work_order,machine_id,product,material_lot,start,end\n"
        "WO-1,M1,A,L1,2026-01-05T06:00:00Z,2026-01-05T08:00:00Z\n"
        "WO-1,M1,A,L1,2026-01-05T09:00:00Z,2026-01-05T10:00:00Z\n"
        "WO-2,M1,B,L2,2026-01-05T07:00:00Z,2026-01-05T09:00:00Z\n"
        "WO-3,M2,B,L3,yesterday,2026-01-05T09:00:00Z\n"
        "WO-4,M2,B,L3,2026-01-05T09:00:00Z,2026-01-05T08:00:00Z\n"
        ",M2,B,L3,2026-01-05T06:00:00Z,2026-01-05T07:00:00Z\n"
        "WO-5,M2,B,,2026-01-05T06:00:00Z,2026-01-05T07:00:00Z\n"
    )
    (tmp_path / "spec_limits.csv").write_text(
        "product,characteristic,lsl,target,usl\nA,bore,1,2,3\nB,bore,3,2,1\nC,bore,x,2,3\n"
    )
    ctx, dead = load_context(tmp_path)
    assert ctx.work_orders["work_order"].to_list() == ["WO-1", "WO-5"]
    assert ctx.spec_limits["product"].to_list() == ["A"]
    reasons = dict(zip(dead["raw"].to_list(), dead["reason"].to_list(), strict=True))
    by_reason = sorted(reasons.values())
    assert by_reason == sorted(
        [
            "duplicate work order WO-1",
            "overlaps work order WO-1 on M1",
            "start yesterday is not a time",
            "end 2026-01-05T08:00:00Z is not after start 2026-01-05T09:00:00Z",
            "work_order missing",
            "limits out of order: lsl 3 target 2 usl 1",
            "lsl x is not a finite number",
        ]
    )
    with pytest.raises(ContextLoadError) as refused:
        ContextStore(tmp_path).current()
    lines = str(refused.value).splitlines()
    assert "(first load) rejected" in lines[0]
    assert lines[1:8] == [
        "  work_orders.csv line 3: duplicate work order WO-1",
        "  work_orders.csv line 4: overlaps work order WO-1 on M1",
        "  work_orders.csv line 5: start yesterday is not a time",
        "  work_orders.csv line 6: end 2026-01-05T08:00:00Z is not after start "
        "2026-01-05T09:00:00Z",
        "  work_orders.csv line 7: work_order missing",
        "  spec_limits.csv line 3: limits out of order: lsl 3 target 2 usl 1",
        "  spec_limits.csv line 4: lsl x is not a finite number",
    ]


def _ctx(orders: pl.DataFrame) -> ErpContext:
    return ErpContext(orders, pl.DataFrame(schema=SPEC_SCHEMA))


def test_readings_wait_for_context_that_arrives_late() -> None:
    from floorsight.pipelines.context import ContextHold

    hold = ContextHold(timedelta(seconds=30))
    before = _orders().filter(pl.col("machine_id") == "M2")  # M1's orders not booked yet
    # M1 runs but its work order is not in ERP yet: held, with everything after it
    assert hold.push(_ctx(before), readings([("M1", "t", s, float(s)) for s in range(10)])) is None
    assert (
        hold.push(_ctx(before), readings([("M1", "t", s, float(s)) for s in range(10, 20)])) is None
    )
    # the order is booked (a context reload): all held readings go on, joined, in order
    out = hold.push(_ctx(_orders()), readings([("M1", "t", 20.0, 20.0)]))
    assert out["value"].to_list() == [float(s) for s in range(21)]
    assert set(out["work_order"]) == {"WO-1"}
    assert hold.held is None


def test_readings_without_context_are_flagged_after_the_hold() -> None:
    from floorsight.pipelines.context import ContextHold

    hold = ContextHold(timedelta(seconds=30))
    none = _ctx(pl.DataFrame(schema=WORK_ORDER_SCHEMA))
    assert hold.push(none, readings([("M1", "t", s, 1.0) for s in range(0, 20)])) is None
    # the machine's clock passes 30 s beyond the first held readings: those are given up,
    # released flagged (empty work order) and in order; the newest 30 s still wait
    out = hold.push(none, readings([("M1", "t", s, 1.0) for s in range(20, 41)]))
    assert out["ts"].to_list() == [T0 + timedelta(seconds=s) for s in range(0, 10)]
    assert set(out["work_order"]) == {""}
    assert hold.held.height == 31  # bounded: readings of the last 30 s (10 s to 40 s)
    rest = hold.flush(none)  # end of input: nothing is lost
    assert rest.height == 31 and rest["ts"].min() == T0 + timedelta(seconds=10)


def test_context_from_a_duckdb_database_equals_the_csv_folder(tmp_path) -> None:
    import duckdb

    from floorsight.simulate import PlantOptions, make_plant
    from floorsight.simulators.history import write_history

    plant = make_plant(PlantOptions(machines=3, start=T0, horizon=timedelta(hours=3), seed=2))
    write_history(plant, tmp_path, T0, T0 + timedelta(minutes=1))
    from_db = ContextStore(tmp_path / "erp.duckdb")
    from_csv = ContextStore(tmp_path / "erp")
    a, b = from_db.current(), from_csv.current()
    assert a.work_orders.height == len(plant.work_orders) > 0
    assert a.work_orders.equals(b.work_orders)
    assert set(a.work_orders["batch"]) == {"B-" + w.work_order[3:] for w in plant.work_orders}
    assert a.spec_limits.sort("product").equals(b.spec_limits.sort("product"))
    # an order booked in the database is picked up without a restart
    time.sleep(0.01)
    with duckdb.connect(str(tmp_path / "erp.duckdb")) as con:
        # (its lot must exist: the context suite checks foreign keys, docs/data-quality.md)
        con.execute(
            "INSERT INTO work_orders SELECT 'WO-NEW', 'M09', 'P-100', min(lot_id), "
            "TIMESTAMPTZ '2026-01-05 06:00:00+00', TIMESTAMPTZ '2026-01-05 07:00:00+00' "
            "FROM material_lots"
        )
    os.utime(tmp_path / "erp.duckdb")
    assert "WO-NEW" in from_db.current().work_orders["work_order"].to_list()


def test_context_from_postgresql_is_checked_and_reloaded(postgres) -> None:
    import psycopg

    with psycopg.connect(postgres, autocommit=True) as con:
        con.execute(
            "CREATE TABLE work_orders (work_order text, machine_id text, product text, "
            'material_lot text, start timestamptz, "end" timestamptz)'
        )
        con.execute(
            "CREATE TABLE spec_limits (product text, characteristic text, lsl double precision,"
            " target double precision, usl double precision)"
        )
        con.execute(
            "CREATE TABLE batches (batch_id text, work_order text, start timestamptz, "
            'setup_end timestamptz, "end" timestamptz, good_parts int, scrap_parts int)'
        )
        con.execute(
            "INSERT INTO work_orders VALUES "
            "('WO-1', 'M1', 'P-100', 'LOT-A', '2026-01-05 06:00+00', '2026-01-05 07:00+00'),"
            "('WO-2', 'M1', 'P-200', 'LOT-B', '2026-01-05 07:00+00', '2026-01-05 06:30+00')"
        )
        con.execute("INSERT INTO spec_limits VALUES ('P-100', 'bore', 24.98, 25.0, 25.02)")
        con.execute(
            "INSERT INTO batches VALUES ('B-1', 'WO-1', '2026-01-05 06:00+00', "
            "'2026-01-05 06:10+00', '2026-01-05 07:00+00', 90, 2)"
        )
    with pytest.raises(ContextLoadError) as refused:  # a bad row: the start is refused
        ContextStore(postgres, refresh=timedelta(0)).current()
    assert "postgresql:work_orders row 2: end 2026-01-05T06:30:00+0000 is not after start" in str(
        refused.value
    )
    with psycopg.connect(postgres, autocommit=True) as con:
        con.execute("DELETE FROM work_orders WHERE work_order = 'WO-2'")
    store = ContextStore(postgres, refresh=timedelta(0))
    ctx = store.current()
    assert ctx.work_orders.select("work_order", "batch").rows() == [("WO-1", "B-1")]
    assert ctx.work_orders["start"][0] == T0
    assert ctx.spec_limits["usl"].to_list() == [25.02]
    assert store.take_dead() is None
    joined = store.join(readings([("M1", "t", 60.0, 1.0)]))
    assert joined.select("work_order", "product", "batch").row(0) == ("WO-1", "P-100", "B-1")
    with psycopg.connect(postgres, autocommit=True) as con:
        con.execute(
            "INSERT INTO work_orders VALUES "
            "('WO-3', 'M2', 'P-100', 'LOT-C', '2026-01-05 06:00+00', '2026-01-05 08:00+00')"
        )
    assert "WO-3" in store.current().work_orders["work_order"].to_list()
    # a bad reload is rejected whole: WO-3 stays, WO-4 is not taken without its bad neighbour
    with psycopg.connect(postgres, autocommit=True) as con:
        con.execute(
            "INSERT INTO work_orders VALUES "
            "('WO-4', 'M3', 'P-100', 'LOT-C', '2026-01-05 06:00+00', '2026-01-05 08:00+00'),"
            "('WO-5', 'M3', 'P-100', 'LOT-C', '2026-01-05 09:00+00', NULL)"
        )
    assert store.current().work_orders["work_order"].to_list() == ["WO-1", "WO-3"]
    assert store.rejected_loads == 1
