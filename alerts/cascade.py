"""Who must know: what a quality hold or a machine failure touches downstream (genealogy).

From the ERP context tables (``genealogy``, ``batches``, ``customer_orders``, ``shipments``):

- :func:`lot_cascade`: a hold on a material lot reaches every batch made from it, the work
  orders that made them, the customer orders those batches are for (with customer and due
  date) and the shipments that contain them (shipped: a recall; planned: stop them);
- :func:`batch_cascade`: a hold on a batch reaches its lots, the *other* batches made from the
  same lots (suspect too), and all their customer orders;
- :func:`machine_cascade`: a machine down (or predicted to fail) at a time reaches the work
  orders planned on it from then on and the customer orders whose due dates they put at risk.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import polars as pl


@dataclass(frozen=True)
class Cascade:
    lots: list[str]
    batches: list[str]
    work_orders: list[str]
    customer_orders: pl.DataFrame  # customer_order, customer, product, quantity, due
    #: shipment_id, customer_order, batch_id, shipped_at, status (empty without a shipments table)
    shipments: pl.DataFrame = field(default_factory=pl.DataFrame)

    def as_dict(self) -> dict:
        return {
            "lots": self.lots,
            "batches": self.batches,
            "work_orders": self.work_orders,
            "customer_orders": self.customer_orders.to_dicts(),
            "shipments": self.shipments.to_dicts(),
        }

    @property
    def shipment_ids(self) -> list[str]:
        if self.shipments.height == 0:
            return []
        return self.shipments["shipment_id"].unique().sort().to_list()


def _orders_of(batches: pl.DataFrame, customer_orders: pl.DataFrame) -> pl.DataFrame:
    ids = batches["customer_order"].unique().to_list()
    return customer_orders.filter(pl.col("customer_order").is_in(ids)).sort("customer_order")


def _shipments_of(batches: list[str], tables: dict[str, pl.DataFrame]) -> pl.DataFrame:
    shipments = tables.get("shipments")
    if shipments is None or shipments.height == 0:
        return pl.DataFrame()
    return shipments.filter(pl.col("batch_id").is_in(batches)).sort("shipment_id", "batch_id")


def lot_cascade(lot: str, tables: dict[str, pl.DataFrame]) -> Cascade:
    genealogy, batches = tables["genealogy"], tables["batches"]
    made = genealogy.filter(pl.col("material_lot") == lot)["batch_id"].unique().to_list()
    hit = batches.filter(pl.col("batch_id").is_in(made)).sort("batch_id")
    return Cascade(
        [lot],
        hit["batch_id"].to_list(),
        hit["work_order"].to_list(),
        _orders_of(hit, tables["customer_orders"]),
        _shipments_of(hit["batch_id"].to_list(), tables),
    )


def batch_cascade(batch: str, tables: dict[str, pl.DataFrame]) -> Cascade:
    genealogy = tables["genealogy"]
    lots = genealogy.filter(pl.col("batch_id") == batch)["material_lot"].unique().sort().to_list()
    suspects = genealogy.filter(pl.col("material_lot").is_in(lots))["batch_id"].unique()
    hit = tables["batches"].filter(pl.col("batch_id").is_in(suspects.to_list())).sort("batch_id")
    return Cascade(
        lots,
        hit["batch_id"].to_list(),
        hit["work_order"].to_list(),
        _orders_of(hit, tables["customer_orders"]),
        _shipments_of(hit["batch_id"].to_list(), tables),
    )


def machine_cascade(machine_id: str, at: datetime, tables: dict[str, pl.DataFrame]) -> Cascade:
    """Work orders on ``machine_id`` not finished at ``at``, and their customer orders."""
    batches = tables["batches"]
    hit = batches.filter((pl.col("machine_id") == machine_id) & (pl.col("end") > at)).sort("start")
    return Cascade(
        [],
        hit["batch_id"].to_list(),
        hit["work_order"].to_list(),
        _orders_of(hit, tables["customer_orders"]),
    )
