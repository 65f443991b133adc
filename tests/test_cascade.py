"""Genealogy cascade on the simulator's ERP data: a held lot reaches exactly what it touches."""

from __future__ import annotations

from datetime import timedelta

import pytest

from floorsight.alerts.cascade import batch_cascade, lot_cascade, machine_cascade
from floorsight.records import FaultKind
from floorsight.simulate import PlantOptions, make_plant
from floorsight.simulators.erp import erp_tables
from tests.conftest import T0


@pytest.fixture(scope="module")
def plant_and_tables():
    plant = make_plant(
        PlantOptions(
            machines=4,
            start=T0,
            horizon=timedelta(days=2),
            seed=9,
            faults_per_machine_day=1.0,
            fault_kinds=(FaultKind.BAD_LOT,),
        )
    )
    return plant, erp_tables(plant)


def test_a_held_lot_reaches_its_batches_and_their_customer_orders(plant_and_tables) -> None:
    plant, tables = plant_and_tables
    bad = next(f.detail for f in plant.faults if f.kind is FaultKind.BAD_LOT)
    cascade = lot_cascade(bad, tables)
    # expected, straight from the plant's own records
    orders = [w for w in plant.work_orders if w.material_lot == bad]
    assert cascade.work_orders == sorted(w.work_order for w in orders)
    assert cascade.batches == sorted("B-" + w.work_order[3:] for w in orders)
    batches = tables["batches"]
    expected_cos = sorted(
        set(batches.filter(batches["work_order"].is_in(cascade.work_orders))["customer_order"])
    )
    assert cascade.customer_orders["customer_order"].to_list() == expected_cos
    assert {"customer", "due", "quantity"} <= set(cascade.customer_orders.columns)
    assert cascade.as_dict()["lots"] == [bad]


def test_a_held_batch_reaches_batches_sharing_its_lots(plant_and_tables) -> None:
    plant, tables = plant_and_tables
    w = plant.work_orders[3]
    cascade = batch_cascade("B-" + w.work_order[3:], tables)
    assert cascade.lots == [w.material_lot]
    same_lot = sorted(x.work_order for x in plant.work_orders if x.material_lot == w.material_lot)
    assert cascade.work_orders == same_lot


def test_a_machine_down_reaches_its_open_work_orders(plant_and_tables) -> None:
    plant, tables = plant_and_tables
    at = T0 + timedelta(hours=20)
    cascade = machine_cascade("M02", at, tables)
    expected = [w for w in plant.work_orders if w.machine_id == "M02" and w.end > at]
    assert cascade.work_orders == [w.work_order for w in sorted(expected, key=lambda w: w.start)]
    assert cascade.customer_orders.height >= 1
    assert machine_cascade("M99", at, tables).work_orders == []


def test_batch_cascade_follows_shared_lots_on_hand_made_genealogy() -> None:
    import polars as pl

    tables = {
        "genealogy": pl.DataFrame(
            {
                "batch_id": ["B1", "B2", "B2", "B3", "B4"],
                "material_lot": ["L1", "L1", "L2", "L2", "L3"],
                "work_order": ["W1", "W2", "W2", "W3", "W4"],
            }
        ),
        "batches": pl.DataFrame(
            {
                "batch_id": ["B1", "B2", "B3", "B4"],
                "work_order": ["W1", "W2", "W3", "W4"],
                "customer_order": ["C1", "C1", "C2", "C3"],
            }
        ),
        "customer_orders": pl.DataFrame(
            {"customer_order": ["C1", "C2", "C3"], "customer": ["x", "y", "z"]}
        ),
    }
    c = batch_cascade("B2", tables)
    assert c.lots == ["L1", "L2"]
    assert c.batches == ["B1", "B2", "B3"]  # B4 shares no lot
    assert c.customer_orders["customer_order"].to_list() == ["C1", "C2"]
    assert lot_cascade("L3", tables).batches == ["B4"]


def test_a_held_shared_lot_reaches_exactly_its_batches_orders_and_shipments(
    plant_and_tables,
) -> None:
    plant, tables = plant_and_tables
    counts = {}
    for w in plant.work_orders:
        counts.setdefault(w.material_lot, []).append(w)
    lot, orders = next((lot, ws) for lot, ws in counts.items() if len(ws) >= 2)
    cascade = lot_cascade(lot, tables)
    batches = sorted("B-" + w.work_order[3:] for w in orders)
    assert cascade.batches == batches
    # the customer orders those batches were allocated to, and nothing else
    allocated = tables["batches"].filter(tables["batches"]["batch_id"].is_in(batches))
    assert cascade.customer_orders["customer_order"].to_list() == sorted(
        set(allocated["customer_order"])
    )
    # every shipment holding one of the batches, with exactly those batches listed
    shipments = tables["shipments"]
    expected = shipments.filter(shipments["batch_id"].is_in(batches))
    assert cascade.shipment_ids == sorted(set(expected["shipment_id"]))
    assert sorted(cascade.shipments["batch_id"]) == sorted(expected["batch_id"])
    assert set(cascade.shipments["batch_id"]) == set(batches)  # each batch ships somewhere
    assert set(cascade.shipments["status"]) <= {"shipped", "planned"}
