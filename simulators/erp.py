"""The plant's ERP/MES/CMMS/LIMS context as tables, and writers for CSV, Parquet and DuckDB.

Tables (one frame each, see docs/simulator.md for every column):

- ``machines`` (line and type of each machine: where its alerts go);
- ``products``, ``recipes`` (setpoints per product), ``spec_limits`` (LSL/target/USL);
- ``work_orders`` (the columns the pipeline's context join reads) and ``batches`` (one batch per
  work order: setup, customer order, good and scrap parts made);
- ``material_lots`` (supplier, received) and ``genealogy`` (which lots went into which batch);
- ``customer_orders`` (which batches ship to whom, due date) and ``shipments`` (which batches
  left, or will leave, in which shipment of a customer order);
- ``maintenance_log`` (CMMS: failures, repairs, tool changes, planned maintenance);
- ``lab_results`` (sampled parts measured in the lab; ``available_at`` is hours after the part
  was made: these are the delayed labels).
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import duckdb
import numpy as np
import polars as pl

from floorsight.records import READING_SCHEMA
from floorsight.simulators.catalog import products_frame, recipes_frame, spec_limits_frame
from floorsight.simulators.plant import LAB_DELAY_H, LAB_EVERY, Plant

_TS = READING_SCHEMA["ts"]
_CUSTOMERS = ("Acme Automotive", "Nordic Pumps", "Helix Medical", "Vanta Appliances")


def erp_tables(plant: Plant) -> dict[str, pl.DataFrame]:
    """Every context table of ``plant``."""
    parts = plant.parts
    batches = _batches(plant, parts, _allocation(plant))
    return {
        "machines": pl.DataFrame(
            {
                "machine_id": [m.machine_id for m in plant.machines],
                "line": [m.line for m in plant.machines],
                "machine_type": [m.machine_type for m in plant.machines],
            }
        ),
        "products": products_frame(),
        "recipes": recipes_frame(),
        "spec_limits": spec_limits_frame(),
        "work_orders": plant.work_orders_frame(),
        "batches": batches,
        "material_lots": _lots(plant),
        "genealogy": _genealogy(plant),
        "customer_orders": _customer_orders(plant, batches),
        "shipments": _shipments(plant, batches),
        "maintenance_log": maintenance_log(plant),
        "lab_results": lab_results(plant, parts),
    }


def _batches(plant: Plant, parts: pl.DataFrame, allocation: dict[str, str]) -> pl.DataFrame:
    made = (
        parts.group_by("work_order").agg(
            good_parts=pl.col("good").sum().cast(pl.Int64),
            scrap_parts=(~pl.col("good")).sum().cast(pl.Int64),
        )
        if parts.height
        else pl.DataFrame(
            schema={"work_order": pl.String, "good_parts": pl.Int64, "scrap_parts": pl.Int64}
        )
    )
    rows = [
        {
            "batch_id": "B-" + w.work_order.removeprefix("WO-"),
            "work_order": w.work_order,
            "machine_id": w.machine_id,
            "product": w.product,
            "start": w.start,
            "setup_end": w.running_from,
            "end": w.end,
            "customer_order": allocation[w.work_order],
        }
        for w in plant.work_orders
    ]
    frame = pl.DataFrame(rows).with_columns(pl.col("start", "setup_end", "end").cast(_TS))
    return frame.join(made, on="work_order", how="left").with_columns(
        pl.col("good_parts", "scrap_parts").fill_null(0)
    )


def _allocation(plant: Plant) -> dict[str, str]:
    """Work order -> customer order: consecutive orders of one product fill one customer order."""
    rng = np.random.default_rng([plant.seed, 13])
    out, current, left, n = {}, {}, {}, 5000 + plant.seed % 1000 * 10
    for w in sorted(plant.work_orders, key=lambda w: (w.start, w.machine_id)):
        if left.get(w.product, 0) <= 0:
            n += 1
            current[w.product] = f"CO-{n}"
            left[w.product] = int(rng.integers(2, 5))
        out[w.work_order] = current[w.product]
        left[w.product] -= 1
    return out


def _customer_orders(plant: Plant, batches: pl.DataFrame) -> pl.DataFrame:
    rng = np.random.default_rng([plant.seed, 17])
    orders = batches.group_by("customer_order", maintain_order=True).agg(
        pl.col("product").first(),
        pl.col("end").max().alias("last_batch_end"),
        pl.len().alias("batches"),
    )
    return orders.select(
        "customer_order",
        pl.Series(
            "customer",
            [_CUSTOMERS[int(i)] for i in rng.integers(len(_CUSTOMERS), size=orders.height)],
        ),
        "product",
        (pl.col("batches") * pl.Series(rng.integers(300, 900, size=orders.height))).alias(
            "quantity"
        ),
        (
            pl.col("last_batch_end")
            + pl.duration(days=pl.Series(rng.integers(1, 4, size=orders.height)))
        ).alias("due"),
    )


def _shipments(plant: Plant, batches: pl.DataFrame) -> pl.DataFrame:
    """One or two shipments per customer order, each with the batches finished before it.

    A shipment leaves 2 to 20 hours after its last batch ends; ``status`` is ``shipped`` when
    that is before the end of the simulated horizon, else ``planned``.
    """
    rng = np.random.default_rng([plant.seed, 19])
    horizon_end = plant.end
    rows = []
    for (co,), part in (
        batches.sort("end")
        .partition_by("customer_order", as_dict=True, maintain_order=True)
        .items()
    ):
        ids, ends = part["batch_id"].to_list(), part["end"].to_list()
        cut = int(rng.integers(1, len(ids))) if len(ids) > 1 and rng.random() < 0.5 else len(ids)
        previous = None
        for k, (lo, hi) in enumerate(((0, cut), (cut, len(ids)))):
            if lo == hi:
                continue
            delay = timedelta(seconds=int(rng.uniform(2, 20) * 3600))
            shipped_at = max(ends[hi - 1] + delay, previous or ends[hi - 1])
            previous = shipped_at
            for batch_id in ids[lo:hi]:
                rows.append(
                    {
                        "shipment_id": f"SH-{co.removeprefix('CO-')}-{k + 1}",
                        "customer_order": co,
                        "batch_id": batch_id,
                        "shipped_at": shipped_at,
                        "status": "shipped" if shipped_at <= horizon_end else "planned",
                    }
                )
    schema = {
        "shipment_id": pl.String,
        "customer_order": pl.String,
        "batch_id": pl.String,
        "shipped_at": _TS,
        "status": pl.String,
    }
    return pl.DataFrame(rows, schema=schema)


def _lots(plant: Plant) -> pl.DataFrame:
    return pl.DataFrame(
        [
            {
                "lot_id": lot.lot_id,
                "material": lot.material,
                "supplier": lot.supplier,
                "received": lot.received,
            }
            for lot in plant.lots
        ]
    ).with_columns(pl.col("received").cast(_TS))


def _genealogy(plant: Plant) -> pl.DataFrame:
    """Which material lots went into which batch (one lot per work order here)."""
    return pl.DataFrame(
        [
            {
                "batch_id": "B-" + w.work_order.removeprefix("WO-"),
                "material_lot": w.material_lot,
                "work_order": w.work_order,
            }
            for w in plant.work_orders
        ]
    )


def maintenance_log(plant: Plant) -> pl.DataFrame:
    """CMMS log: failures (with their repair), tool changes and planned maintenance."""
    rows = []
    for d in plant.downtime_log():
        if d.kind == "repair":
            rows.append(_event(d.machine_id, "failure", d.start, d.start, d.description))
        rows.append(_event(d.machine_id, d.kind, d.start, d.end, d.description))
    rows.sort(key=lambda r: (r["start"], r["machine_id"], r["kind"]))
    for i, r in enumerate(rows):
        r["event_id"] = f"MX-{i + 1:05d}"
    schema = {
        "event_id": pl.String,
        "machine_id": pl.String,
        "kind": pl.String,
        "start": _TS,
        "end": _TS,
        "description": pl.String,
    }
    return pl.DataFrame(rows, schema=schema).select(list(schema))


def _event(machine_id, kind, start, end, description) -> dict:
    return {
        "event_id": "",
        "machine_id": machine_id,
        "kind": kind,
        "start": start,
        "end": end,
        "description": description,
    }


def lab_results(plant: Plant, parts: pl.DataFrame) -> pl.DataFrame:
    """Every ``LAB_EVERY``-th part of each machine, measured in the lab hours later."""
    if not parts.height:
        return pl.DataFrame()
    sampled = parts.filter(pl.col("part_no") % LAB_EVERY == 0)
    rng = np.random.default_rng([plant.seed, 23])
    delay_s = rng.uniform(*LAB_DELAY_H, size=sampled.height) * 3600
    noise = rng.standard_normal(sampled.height)
    lab_noise = {m.machine_id: 0.3 * m.type.sensor(m.type.quality).noise for m in plant.machines}
    return sampled.select(
        pl.format("LAB-{}-{}", "machine_id", "part_no").alias("sample_id"),
        "machine_id",
        "work_order",
        "product",
        "material_lot",
        pl.col("ts").alias("part_made_at"),
        (pl.col("ts") + pl.duration(seconds=pl.Series(delay_s.round()))).alias("available_at"),
        "characteristic",
        (
            pl.col("value")
            + pl.Series(noise)
            * pl.col("machine_id").replace_strict(lab_noise, return_dtype=pl.Float64)
        ).alias("value"),
        "in_spec",
    )


def write_tables(tables: dict[str, pl.DataFrame], directory: Path, fmt: str = "csv") -> None:
    """Write each table as ``<name>.csv`` or ``<name>.parquet`` into ``directory``."""
    if fmt not in ("csv", "parquet"):
        raise ValueError(f"unknown format {fmt!r}: use csv or parquet")
    directory.mkdir(parents=True, exist_ok=True)
    for name, frame in tables.items():
        if fmt == "csv":
            frame.write_csv(directory / f"{name}.csv")
        else:
            frame.write_parquet(directory / f"{name}.parquet")


def write_duckdb(tables: dict[str, pl.DataFrame], path: Path) -> None:
    """Write the tables into a DuckDB database (the simulated ERP's own store)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(str(path))
    try:
        for name, frame in tables.items():
            arrow = frame.to_arrow()  # noqa: F841 - read by DuckDB's replacement scan
            con.execute(f'CREATE OR REPLACE TABLE "{name}" AS SELECT * FROM arrow')
    finally:
        con.close()


__all__ = ["erp_tables", "lab_results", "maintenance_log", "write_duckdb", "write_tables"]
