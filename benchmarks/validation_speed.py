"""How long the context suites take: GX import, a first validation, a reload changing one table.

    python benchmarks/validation_speed.py --machines 20 --days 7

Prints JSON: seconds to import great_expectations, to validate every context table of a
simulated plant, and to validate again after one table (spec limits) changed (the others come
from the cache).
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import UTC, datetime, timedelta

import polars as pl


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--machines", type=int, default=20)
    parser.add_argument("--days", type=float, default=7.0)
    args = parser.parse_args()

    from floorsight.simulate import PlantOptions, make_plant
    from floorsight.simulators.erp import erp_tables

    plant = make_plant(
        PlantOptions(
            machines=args.machines,
            start=datetime(2026, 1, 5, tzinfo=UTC),
            horizon=timedelta(days=args.days),
            sample_hz=1,
        )
    )
    tables = erp_tables(plant)
    began = time.perf_counter()
    import great_expectations  # noqa: F401

    imported = time.perf_counter() - began

    from floorsight.features.expectations import validate_context

    began = time.perf_counter()
    reports = validate_context(tables)
    first = time.perf_counter() - began
    assert all(r.success for r in reports), [r.report for r in reports if not r.success]

    changed = dict(tables)
    changed["spec_limits"] = tables["spec_limits"].with_columns(usl=pl.col("usl") + 1)
    began = time.perf_counter()
    validate_context(changed)
    reload_one = time.perf_counter() - began
    print(
        json.dumps(
            {
                "machines": args.machines,
                "days": args.days,
                "rows": {name: frame.height for name, frame in tables.items()},
                "import_s": round(imported, 2),
                "validate_all_s": round(first, 2),
                "reload_one_table_s": round(reload_one, 2),
            }
        )
    )


if __name__ == "__main__":
    main()
