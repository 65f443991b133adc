"""How long one context load takes: a large work-order export, plain and through a mapping file.

    python benchmarks/context_load.py --orders 200000

Writes 200,000 work orders (200 machines) twice into a temporary folder: as floorsight's own
CSV layout, and as an SAP-like export (``;`` between cells, German column names, Europe/Berlin
local times ``05.01.2026 07:00:00``, spec limits with a decimal comma) with its mapping file.
Prints JSON: the best of ``--repeat`` loads of each (files and row rules, without the suites).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl

MAP = """
[tables.work_orders]
file = "AUFK.csv"
delimiter = ";"
time_zone = "Europe/Berlin"
times = { start = "%d.%m.%Y %H:%M:%S", end = "%d.%m.%Y %H:%M:%S" }
[tables.work_orders.columns]
work_order = "AUFNR"
machine_id = "ARBPL"
product = "MATNR"
material_lot = "CHARG"
start = "GSTRP"
end = "GLTRP"

[tables.spec_limits]
file = "QPMK.csv"
delimiter = ";"
decimal = ","
[tables.spec_limits.columns]
product = "MATNR"
characteristic = "MERKMAL"
lsl = "UGW"
target = "SOLL"
usl = "OGW"
"""


def write_exports(folder: Path, orders: int, machines: int = 200) -> None:
    t0 = datetime(2026, 1, 5, tzinfo=UTC)
    per = max(orders // machines, 1)
    start = [t0 + timedelta(hours=k % per) for k in range(orders)]
    wo = pl.DataFrame(
        {
            "work_order": [f"WO-{k}" for k in range(orders)],
            "machine_id": [f"M{k // per}" for k in range(orders)],
            "product": ["P-100"] * orders,
            "material_lot": [f"L{k}" for k in range(orders)],
            "start": start,
            "end": [s + timedelta(hours=1) for s in start],
        }
    )
    plain = folder / "plain"
    plain.mkdir()
    wo.with_columns(pl.col("start", "end").dt.strftime("%Y-%m-%dT%H:%M:%SZ")).write_csv(
        plain / "work_orders.csv"
    )
    (plain / "spec_limits.csv").write_text(
        "product,characteristic,lsl,target,usl\nP-100,bore,24.98,25.0,25.02\n"
    )
    sap = folder / "sap"
    sap.mkdir()
    local = wo.with_columns(
        pl.col("start", "end")
        .dt.convert_time_zone("Europe/Berlin")
        .dt.strftime("%d.%m.%Y %H:%M:%S")
    )
    names = {
        "work_order": "AUFNR",
        "machine_id": "ARBPL",
        "product": "MATNR",
        "material_lot": "CHARG",
        "start": "GSTRP",
        "end": "GLTRP",
    }
    local.rename(names).write_csv(sap / "AUFK.csv", separator=";")
    (sap / "QPMK.csv").write_text("MATNR;MERKMAL;UGW;SOLL;OGW\nP-100;bore;24,98;25,0;25,02\n")
    (sap / "map.toml").write_text(MAP)


def best(load, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        load()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--orders", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    from floorsight.pipelines.context import load_context
    from floorsight.pipelines.context_map import load_mapped_context

    with tempfile.TemporaryDirectory(prefix="floorsight-context-load-") as tmp:
        folder = Path(tmp)
        write_exports(folder, args.orders)
        plain, _ = load_context(folder / "plain")
        mapped, _ = load_mapped_context(folder / "sap" / "map.toml")
        assert plain.work_orders.equals(mapped.work_orders)  # the same orders either way
        plain_s = best(lambda: load_context(folder / "plain"), args.repeat)
        mapped_s = best(lambda: load_mapped_context(folder / "sap" / "map.toml"), args.repeat)
        result = {"work_orders": args.orders, "plain_csv_s": plain_s, "mapped_sap_csv_s": mapped_s}
        print(json.dumps({k: round(v, 3) for k, v in result.items()}))


if __name__ == "__main__":
    main()
