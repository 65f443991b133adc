"""The context mapping file reads a plant's own exports as floorsight's tables.

An SAP-like CSV export (cp1252, ';', decimal comma, lines before the header, Europe/Berlin
times), a Parquet drop folder, a DuckDB query and a PostgreSQL table come out as the same
tables as floorsight's own layout; what is wrong in a map or its sources stops the start
naming it; every mapped table is re-read while running.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import duckdb
import polars as pl
import pytest

from floorsight.pipelines.context import ContextLoadError, ContextStore
from floorsight.pipelines.context_map import load_mapped_context, parse_map
from tests.conftest import T0

# an SAP order list (transaction COOIS) as a German Excel user saves it: a title and an empty
# line before the header, ';' between cells, local times, Windows-1252
AUFK = (
    "Auftragsliste Werk 1000;;;;;\n"
    ";;;;;\n"
    "Auftrag;Arbeitsplatz;Material;Charge;Eckstart;Eckende\n"
    "4711;CNC-01;P-100;LOT-Ä1;05.01.2026 07:00:00;05.01.2026 09:00:00\n"
    "4712;CNC-01;P-200;LOT-Ä2;05.01.2026 09:00:00;05.07.2026 08:00:00\n"
)
QPMK = (
    "Material;Merkmal;UGW;Sollwert;OGW\n"
    "P-100;Bohrung;24,98;25,00;25,02\n"
    "P-200;Bohrung;9;10;1.011,5\n"
)

MAP = """
time_zone = "Europe/Berlin"

[tables.work_orders]
file = "sap/AUFK.csv"
encoding = "cp1252"
delimiter = ";"
skip_rows = 2
times = { start = "%d.%m.%Y %H:%M:%S", end = "%d.%m.%Y %H:%M:%S" }
[tables.work_orders.columns]
work_order = "Auftrag"
machine_id = "Arbeitsplatz"
product = "Material"
material_lot = "Charge"
start = "Eckstart"
end = "Eckende"

[tables.spec_limits]
file = "sap/QPMK.csv"
delimiter = ";"
decimal = ","
thousands = "."
[tables.spec_limits.columns]
product = "Material"
characteristic = "Merkmal"
lsl = "UGW"
target = "Sollwert"
usl = "OGW"

[tables.lab_results]
file = "lims/*.parquet"
columns = { sample_id = "Probe", value = "Messwert", characteristic = "Merkmal" }
times = { part_made_at = "epoch_ms", available_at = { format = "iso", time_zone = "UTC" } }
constants = { machine_id = "CNC-01" }

[tables.maintenance_log]
duckdb = "cmms.duckdb"
query = '''
SELECT id AS event_id, asset AS machine_id, art AS kind, von AS start, bis AS "end"
FROM events'''
"""


def _lims(path: Path, rows: list[tuple[str, int, str, float]]) -> None:
    """A LIMS result file: (sample, minutes after T0 the part was made, available at, value)."""
    made = [int((T0 + timedelta(minutes=m)).timestamp() * 1000) for _, m, _, _ in rows]
    pl.DataFrame(
        {
            "Probe": [r[0] for r in rows],
            "part_made_at": made,
            "available_at": [r[2] for r in rows],
            "Merkmal": ["Bohrung"] * len(rows),
            "Messwert": [r[3] for r in rows],
            "work_order": ["4711"] * len(rows),
        }
    ).write_parquet(path)


@pytest.fixture
def plant_exports(tmp_path) -> Path:
    """A folder of a plant's exports and its map (``map.toml``)."""
    (tmp_path / "sap").mkdir()
    (tmp_path / "sap" / "AUFK.csv").write_bytes(AUFK.encode("cp1252"))
    (tmp_path / "sap" / "QPMK.csv").write_text(QPMK)
    (tmp_path / "lims").mkdir()
    _lims(tmp_path / "lims" / "2026-01-05.parquet", [("S-1", 10, "2026-01-05T06:40:00", 25.001)])
    with duckdb.connect(str(tmp_path / "cmms.duckdb")) as con:
        con.execute(
            "CREATE TABLE events (id TEXT, asset TEXT, art TEXT, von TIMESTAMP, bis TIMESTAMP)"
        )
        con.execute(
            "INSERT INTO events VALUES ('E-1', 'CNC-01', 'tool_change', "
            "'2026-01-05 08:00:00', '2026-01-05 08:15:00')"
        )
    (tmp_path / "map.toml").write_text(MAP)
    return tmp_path / "map.toml"


def _touch(path: Path) -> None:
    later = time.time() + 5  # the store sees the change even on coarse mtime clocks
    os.utime(path, (later, later))


def test_a_mapped_plant_export_reads_as_floorsights_tables(plant_exports) -> None:
    ctx, dead = load_mapped_context(plant_exports)
    assert dead is None and not ctx.problems
    wo = ctx.work_orders
    assert wo["work_order"].to_list() == ["4711", "4712"]
    assert wo["machine_id"].to_list() == ["CNC-01", "CNC-01"]
    assert wo["material_lot"].to_list() == ["LOT-Ä1", "LOT-Ä2"]  # cp1252 read right
    # Berlin's winter time is UTC+1, its summer time UTC+2
    assert wo["start"].to_list() == [T0, T0 + timedelta(hours=2)]
    assert wo["end"][1] == T0.replace(month=7)
    spec = ctx.spec_limits
    assert spec.rows() == [
        ("P-100", "Bohrung", 24.98, 25.0, 25.02),
        ("P-200", "Bohrung", 9.0, 10.0, 1011.5),
    ]
    labs = ctx.records["lab_results"]
    assert labs.select("sample_id", "machine_id", "characteristic", "value").rows() == [
        ("S-1", "CNC-01", "Bohrung", 25.001)
    ]
    assert labs["part_made_at"][0] == T0 + timedelta(minutes=10)
    assert labs["available_at"][0] == T0 + timedelta(minutes=40)
    log = ctx.records["maintenance_log"]
    assert log.select("event_id", "kind").rows() == [("E-1", "tool_change")]
    assert log["start"][0] == T0 + timedelta(hours=1)  # 08:00 in Berlin
    # the suites judge the renamed tables: this load passes them
    store = ContextStore(plant_exports)
    store.current()
    assert all(r.success for r in store.take_reports(wait=True))


def _cli(context: Path, tmp_path: Path) -> subprocess.CompletedProcess:
    history = tmp_path / "readings.csv"
    history.write_text("machine_id,sensor,ts,value\nCNC-01,t,2026-01-05T06:00:00Z,1.0\n")
    return subprocess.run(
        [
            *(sys.executable, "-m", "floorsight.cli", "run"),
            *("--context", str(context), "--history", str(history)),
            *("--db", str(tmp_path / "f.duckdb")),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**os.environ, "_TYPER_STANDARD_TRACEBACK": "1", "COLUMNS": "1000"},
    )


@pytest.mark.parametrize(
    ("file", "old", "new", "message"),
    [
        (
            "sap/AUFK.csv",
            "Eckende",
            "Ende",
            "sap/AUFK.csv: has no column 'Eckende' (the map's work_orders.end; it has",
        ),
        (
            "sap/AUFK.csv",
            "05.01.2026 09:00:00;05.07",
            "2026-01-05 09:00;05.07",
            "sap/AUFK.csv line 5: start '2026-01-05 09:00' is not a time in format "
            "%d.%m.%Y %H:%M:%S in Europe/Berlin",
        ),
        ("map.toml", "sap/QPMK.csv", "sap/QMPK.csv", "[tables.spec_limits] reads"),
        ("map.toml", "tables.spec_limits", "tables.spec_limit", "unknown tables ['spec_limit']"),
        ("map.toml", "skip_rows", "skiprows", "tables.work_orders.skiprows: Extra inputs"),
        ("map.toml", "Europe/Berlin", "Europe/Berlln", "'Europe/Berlln' is no IANA time zone"),
        ("map.toml", 'time_zone = "Europe/Berlin"', "", "times without a zone offset need"),
    ],
)
def test_a_wrong_map_or_source_stops_the_run_naming_it(
    plant_exports, file, old, new, message
) -> None:
    path = plant_exports.parent / file
    text = path.read_bytes().decode("cp1252")
    assert old in text
    path.write_bytes(text.replace(old, new).encode("cp1252"))
    run = _cli(plant_exports, plant_exports.parent)
    assert run.returncode == 2, run.stderr[-3000:]
    assert "Traceback" not in run.stderr
    assert message in run.stderr, run.stderr[-3000:]


def test_an_empty_mapped_required_table_stops_the_start(plant_exports) -> None:
    (plant_exports.parent / "sap" / "QPMK.csv").write_text("Material;Merkmal;UGW;Sollwert;OGW\n")
    with pytest.raises(ContextLoadError, match=r"spec_limits \(sap/QPMK.csv\): holds no spec"):
        ContextStore(plant_exports).current()


def test_a_missing_map_is_a_missing_path(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match=r"context map .*map\.toml does not exist"):
        ContextStore(tmp_path / "map.toml").current()


def test_every_mapped_table_reloads_while_running(plant_exports) -> None:
    folder = plant_exports.parent
    store = ContextStore(plant_exports, settle=timedelta(0))
    assert store.current().records["lab_results"]["sample_id"].to_list() == ["S-1"]
    # a new LIMS file in the drop folder
    _lims(folder / "lims" / "2026-01-06.parquet", [("S-2", 20, "2026-01-05T07:00:00Z", 25.0)])
    assert store.current().records["lab_results"]["sample_id"].to_list() == ["S-1", "S-2"]
    # an order appended to the SAP export
    with (folder / "sap" / "AUFK.csv").open("ab") as f:
        f.write(b"4713;CNC-02;P-100;LOT-3;05.01.2026 07:00:00;05.01.2026 08:00:00\n")
    _touch(folder / "sap" / "AUFK.csv")
    assert store.current().work_orders["work_order"].to_list() == ["4711", "4712", "4713"]
    # an event booked in the CMMS database
    with duckdb.connect(str(folder / "cmms.duckdb")) as con:
        con.execute(
            "INSERT INTO events VALUES ('E-2', 'CNC-01', 'repair', "
            "'2026-01-05 10:00:00', '2026-01-05 11:00:00')"
        )
    _touch(folder / "cmms.duckdb")
    assert store.current().records["maintenance_log"]["event_id"].to_list() == ["E-1", "E-2"]
    # a bad edit of the map is rejected whole; the last good context stays
    plant_exports.write_text(MAP.replace('"Auftrag"', '"Order"'))
    _touch(plant_exports)
    assert store.current().work_orders.height == 3
    assert store.rejected_loads == 1
    assert "has no column 'Order'" in store.take_dead()["raw"][0]


def _pg_tables(postgres: str) -> None:
    import psycopg

    with psycopg.connect(postgres, autocommit=True) as con:
        con.execute("CREATE SCHEMA erp")
        con.execute(
            "CREATE TABLE erp.auftraege (nr text, platz text, material text, charge text, "
            "von timestamp, bis timestamp)"
        )
        con.execute(
            "INSERT INTO erp.auftraege VALUES "
            "('4711', 'CNC-01', 'P-100', 'L1', '2026-01-05 07:00', '2026-01-05 09:00')"
        )
        con.execute(
            "CREATE TABLE erp.pruefungen (probe text, maschine text, merkmal text, "
            "gefertigt timestamptz, frei timestamptz, wert numeric)"
        )


PG_MAP = """
time_zone = "Europe/Berlin"

[tables.work_orders]
postgresql = "{url}"
table = "erp.auftraege"
password_env = "FLOORSIGHT_TEST_ERP_PASSWORD"
[tables.work_orders.columns]
work_order = "nr"
machine_id = "platz"
product = "material"
material_lot = "charge"
start = "von"
end = "bis"

[tables.spec_limits]
file = "spec.csv"

[tables.lab_results]
postgresql = "{url}"
query = '''
SELECT probe AS sample_id, maschine AS machine_id, merkmal AS characteristic,
       gefertigt AS part_made_at, frei AS available_at, wert AS value
FROM erp.pruefungen'''
"""


def test_postgresql_tables_are_mapped_and_polled(postgres, tmp_path, monkeypatch) -> None:
    import psycopg

    _pg_tables(postgres)
    (tmp_path / "spec.csv").write_text("product,characteristic,lsl,target,usl\nP-100,b,1,2,3\n")
    (tmp_path / "map.toml").write_text(PG_MAP.format(url=postgres))
    with pytest.raises(ContextLoadError, match="no password: set FLOORSIGHT_TEST_ERP_PASSWORD"):
        ContextStore(tmp_path / "map.toml").current()
    monkeypatch.setenv("FLOORSIGHT_TEST_ERP_PASSWORD", "not-checked-by-a-trust-server")
    store = ContextStore(tmp_path / "map.toml", refresh=timedelta(0))
    ctx = store.current()
    assert ctx.work_orders.select("work_order", "start").rows() == [("4711", T0)]  # Berlin
    assert ctx.records["lab_results"].height == 0
    with psycopg.connect(postgres, autocommit=True) as con:
        con.execute(
            "INSERT INTO erp.pruefungen VALUES ('S-1', 'CNC-01', 'b', "
            "'2026-01-05 06:10+00', '2026-01-05 06:40+00', 2.05)"
        )
    labs = store.current().records["lab_results"]
    assert labs.select("sample_id", "value").rows() == [("S-1", 2.05)]
    assert labs["available_at"][0] == T0 + timedelta(minutes=40)
    assert store.rejected_loads == 0


def test_a_password_in_a_mapped_url_is_refused(tmp_path) -> None:
    text = PG_MAP.format(url="postgresql://erp:secret@127.0.0.1:1/erp")
    (tmp_path / "spec.csv").write_text("product,characteristic,lsl,target,usl\nP-100,b,1,2,3\n")
    (tmp_path / "map.toml").write_text(text)
    with pytest.raises(ContextLoadError) as caught:
        ContextStore(tmp_path / "map.toml").current()
    assert "the URL holds a password" in str(caught.value)
    assert "secret" not in str(caught.value)


def test_a_map_needs_one_source_per_table() -> None:
    with pytest.raises(ContextLoadError) as caught:
        parse_map(
            b'[tables.work_orders]\nfile = "a.csv"\nduckdb = "b.duckdb"\ntable = "t"\n',
            Path("/erp"),
        )
    text = str(caught.value)
    assert "tables.work_orders: give one of file, duckdb or postgresql" in text
    assert "no [tables.spec_limits]" not in text or "tables.work_orders" in text


def test_the_mapping_example_of_the_docs_is_a_valid_map() -> None:
    docs = (Path(__file__).parents[1] / "docs" / "connect.md").read_text()
    section = docs[docs.index("## ERP and MES context: the mapping file") :]
    example = section[section.index("```toml\n") + 8 : section.index("```\n", 8)]
    cmap = parse_map(example.encode(), Path("/srv/erp"))
    assert set(cmap.tables) == {
        "work_orders",
        "spec_limits",
        "lab_results",
        "maintenance_log",
        "batches",
    }
    assert cmap.tables["spec_limits"].decimal == ","
    assert cmap.polled  # the PostgreSQL table is re-read on an interval


@pytest.mark.parametrize(
    ("cell", "utc"),
    [
        ("2026-01-05T06:00:00Z", "2026-01-05T06:00:00"),
        ("2026-01-05 07:00:00+01:00", "2026-01-05T06:00:00"),
        ("2026-01-05T06:00:00.5+0000", "2026-01-05T06:00:00.500000"),
        ("2026-01-05T07:00:00+01", "2026-01-05T06:00:00"),
        ("2026-01-05T07:00", "2026-01-05T06:00:00"),  # naive: Berlin
        ("2026-07-05T08:00:00", "2026-07-05T06:00:00"),  # naive, summer time
        ("2026-01-05", "2026-01-04T23:00:00"),  # midnight in Berlin
        ("2026-10-25T02:30:00", "2026-10-25T00:30:00"),  # the repeated hour: the first
        ("2026-03-29T02:30:00", None),  # the skipped hour: no such time
        ("2", None),
        ("05.01.2026", None),
    ],
)
def test_iso_times_read_with_their_offset_or_the_zone(cell, utc) -> None:
    from datetime import datetime

    from floorsight.pipelines.context_map import TimeColumn, _parse_times

    times, bad = _parse_times(pl.Series("t", [cell]), TimeColumn(time_zone="Europe/Berlin"))
    if utc is None:
        assert bad == [0]
    else:
        assert bad == []
        assert times[0] == datetime.fromisoformat(utc + "+00:00")


def test_an_empty_drop_folder_of_a_record_table_is_no_table_yet(plant_exports) -> None:
    folder = plant_exports.parent
    (folder / "lims" / "2026-01-05.parquet").unlink()
    store = ContextStore(plant_exports, settle=timedelta(0))
    assert "lab_results" not in store.current().records
    _lims(folder / "lims" / "2026-01-06.parquet", [("S-2", 20, "2026-01-05T07:00:00Z", 25.0)])
    assert store.current().records["lab_results"]["sample_id"].to_list() == ["S-2"]
    assert store.rejected_loads == 0


def test_floorsight_run_joins_readings_with_a_mapped_context(plant_exports) -> None:
    from floorsight.storage import Database

    folder = plant_exports.parent
    run = _cli(plant_exports, folder)
    assert run.returncode == 0, run.stderr[-3000:]
    features = Database(folder / "f.duckdb").query(
        "SELECT machine_id, work_order, product, material_lot FROM features"
    )
    assert features.unique().rows() == [("CNC-01", "4711", "P-100", "LOT-Ä1")]
