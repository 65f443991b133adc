"""History files that are not clean: bad cells, time zones, poisoned times, unreadable files.

Every row of a history file is either a reading or a dead letter whose reason names the file,
the row and the cell; a file that is no readings file stops the run before it starts.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
from bytewax.testing import run_main
from typer.testing import CliRunner

from floorsight.cli import app
from floorsight.pipelines.context import ContextStore
from floorsight.pipelines.flow import PipelineSettings, build_flow
from floorsight.pipelines.replay import (
    HistoryError,
    Position,
    ReplaySource,
    read_history,
    utc_times,
)
from floorsight.pipelines.validate import Checked, ReadingRules
from floorsight.records import READING_SCHEMA
from floorsight.simulators import build_plant
from floorsight.storage import Database
from tests.conftest import T0

HEADER = "machine_id,sensor,ts,value\n"


def _csv(path: Path, rows: list[str]) -> Path:
    path.write_text(HEADER + "".join(r + "\n" for r in rows))
    return path


def _good_rows(n: int, start: datetime = T0) -> list[str]:
    return [
        f"M{i % 3 + 1},temp,{(start + timedelta(seconds=i)).isoformat()},{20 + i % 7}"
        for i in range(n)
    ]


def _reasons(checked: Checked) -> list[str]:
    return [] if checked.dead is None else checked.dead["reason"].to_list()


def test_a_bad_timestamp_and_text_after_the_inference_rows_cost_their_rows_only(tmp_path):
    rows = _good_rows(3000)
    rows[1233] = rows[1233].replace(rows[1233].split(",")[2], "noon")  # data row 1234
    rows[2499] = rows[2499].rsplit(",", 1)[0] + ",n/a"  # long after polars' inference rows
    checked = read_history(_csv(tmp_path / "day.csv", rows))
    assert _reasons(checked) == [
        "day.csv row 1234: ts 'noon' is not an ISO 8601 time",
        "day.csv row 2500: value 'n/a' is not a number",
    ]
    assert checked.ok.height == 2998
    assert checked.ok.schema == pl.Schema(READING_SCHEMA)
    assert checked.ok["ts"].is_sorted()
    # the dead letter keeps the cells as the file had them
    raw = checked.dead["raw"][0]
    assert '"ts_text":"noon"' in raw and '"row":1234' in raw


def test_offsets_are_converted_to_utc_and_a_naive_row_among_them_is_a_dead_letter(tmp_path):
    rows = [
        "M1,temp,2026-01-05T06:00:00+01:00,1",  # 05:00 UTC
        "M1,temp,2026-01-05T05:00:01Z,2",
        "M1,temp,2026-01-05 04:00:02-01:00,3",  # 05:00:02 UTC, space separator
        "M1,temp,2026-01-05T05:00:03.250+00:00,4",
        "M1,temp,2026-01-05T06:00:04+01,5",  # hours-only offset: Python's ISO parser
        "M1,temp,2026-01-05T05:00:05,6",  # naive among offsets
        "M1,temp,garbage,7",
        "M1,temp,,8",
        "M1,temp,2026-01-05,9",  # a date is no time
        "M1,temp,2026-01-05T05:00:06+25:00,10",
    ]
    checked = read_history(_csv(tmp_path / "mixed.csv", rows))
    assert checked.ok["ts"].to_list() == [
        datetime(2026, 1, 5, 5, 0, 0, tzinfo=UTC),
        datetime(2026, 1, 5, 5, 0, 1, tzinfo=UTC),
        datetime(2026, 1, 5, 5, 0, 2, tzinfo=UTC),
        datetime(2026, 1, 5, 5, 0, 3, 250_000, tzinfo=UTC),
        datetime(2026, 1, 5, 5, 0, 4, tzinfo=UTC),
    ]
    assert checked.ok["value"].to_list() == [1.0, 2.0, 3.0, 4.0, 5.0]
    assert _reasons(checked) == [
        "mixed.csv row 6: ts '2026-01-05T05:00:05' has no time zone (see --time-zone)",
        "mixed.csv row 7: ts 'garbage' is not an ISO 8601 time",
        "mixed.csv row 8: ts missing",
        "mixed.csv row 9: ts '2026-01-05' is not an ISO 8601 time",
        "mixed.csv row 10: ts '2026-01-05T05:00:06+25:00' is not an ISO 8601 time",
    ]


def test_naive_files_are_refused_without_a_time_zone_and_localised_with_one(tmp_path):
    path = _csv(
        tmp_path / "local.csv",
        [
            "M1,temp,2026-01-05T06:00:00,1",  # winter: Berlin is UTC+1
            "M1,temp,2026-07-05T06:00:00,2",  # summer: UTC+2
            "M1,temp,2026-03-29T02:30:00,3",  # skipped by the spring change
            "M1,temp,2026-10-25T02:30:00,4",  # repeated by the autumn change
            "M1,temp,2026-01-05T06:00:00Z,5",  # an offset wins over the zone
        ],
    )
    with pytest.raises(HistoryError, match=r"local.csv: ts times have no time zone.*--time-zone"):
        read_history(path)
    checked = read_history(path, time_zone="Europe/Berlin", tolerance=timedelta(days=365))
    assert checked.ok["ts"].to_list() == [
        datetime(2026, 1, 5, 5, tzinfo=UTC),
        datetime(2026, 1, 5, 6, tzinfo=UTC),
        datetime(2026, 7, 5, 4, tzinfo=UTC),
    ]
    assert _reasons(checked) == [
        f"local.csv row {i}: ts '{ts}' is skipped or repeated in Europe/Berlin "
        "(a daylight-saving change)"
        for i, ts in ((3, "2026-03-29T02:30:00"), (4, "2026-10-25T02:30:00"))
    ]
    for unknown in ("Mars/Olympus", "posix/Europe/Berlin", "../../etc/passwd"):
        with pytest.raises(HistoryError, match="not an IANA name"):
            read_history(path, time_zone=unknown)


def test_parquet_columns_of_the_wrong_type_are_cast_leniently(tmp_path):
    path = tmp_path / "typed.parquet"
    pl.DataFrame(
        {
            "machine_id": ["M1", "M1", "M2"],
            "sensor": ["temp"] * 3,
            "ts": ["2026-01-05T06:00:00+01:00", "soon", "2026-01-05T05:00:02Z"],
            "value": ["1.5", "2", "hot"],
        }
    ).write_parquet(path)
    checked = read_history(path)
    assert checked.ok.rows() == [("M1", "temp", datetime(2026, 1, 5, 5, tzinfo=UTC), 1.5)]
    assert _reasons(checked) == [
        "typed.parquet row 2: ts 'soon' is not an ISO 8601 time",
        "typed.parquet row 3: value 'hot' is not a number",
    ]
    # a naive Datetime column is refused like naive text; a zoned one is converted
    naive = tmp_path / "naive.parquet"
    pl.DataFrame(
        {"machine_id": ["M1"], "sensor": ["temp"], "ts": [datetime(2026, 1, 5, 6)], "value": [1]}
    ).write_parquet(naive)
    with pytest.raises(HistoryError, match="no time zone"):
        read_history(naive)
    assert read_history(naive, "Europe/Berlin").ok["ts"].to_list() == [
        datetime(2026, 1, 5, 5, tzinfo=UTC)
    ]


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        (
            "cols.csv",
            "machine,sensor,time,value\nM1,t,x,1\n",
            r"lacks columns \['machine_id', 'ts'\]",
        ),
        ("junk.parquet", "this is not parquet", "not a readable readings file"),
        ("empty.csv", "", "not a readable readings file"),
    ],
)
def test_a_file_that_is_no_readings_file_is_refused_naming_it(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(HistoryError, match=message) as error:
        read_history(path)
    assert name in str(error.value)


def test_a_poisoned_time_is_outside_the_file_range_and_a_sparse_tail_is_not(tmp_path):
    rows = _good_rows(500)
    # the file's last readings come every 4 minutes: within the tolerance of each other
    rows += [f"M1,temp,{(T0 + timedelta(seconds=500 + 240 * k)).isoformat()},1" for k in (1, 2)]
    rows.insert(100, "M2,temp,2100-01-01T00:00:00+00:00,1")
    rows.insert(200, "M2,temp,2100-01-01T00:00:01+00:00,1")  # a second one cannot help it
    rows.insert(300, "M3,temp,1970-01-01T00:00:00+00:00,1")
    checked = read_history(_csv(tmp_path / "poison.csv", rows))
    reasons = sorted(_reasons(checked), key=lambda r: int(r.split(" row ")[1].split(":")[0]))
    assert len(reasons) == 3
    assert reasons[0].startswith(
        "poison.csv row 101: ts '2100-01-01T00:00:00+00:00' is outside the file's time range "
        "2026-01-05T06:00:00+00:00 .. 2026-01-05T06:16:20+00:00 by more than 0:05:00"
    )
    assert "row 201" in reasons[1] and "row 301" in reasons[2]
    assert checked.ok.height == 502
    assert checked.ok["ts"].max() == T0 + timedelta(seconds=980)


def _plant():
    return build_plant(3, start=T0, horizon=timedelta(minutes=4), seed=3)


def _plant_history(tmp_path: Path, poison: str) -> Path:
    plant = _plant()
    plant.write_context(tmp_path / "erp")
    folder = tmp_path / "readings"
    folder.mkdir()
    for i in range(2):  # two files: the second comes after the first, in time and in name
        frame = plant.readings(T0 + timedelta(minutes=2 * i), T0 + timedelta(minutes=2 * i + 2))
        frame = frame.with_columns(pl.col("ts").dt.strftime("%Y-%m-%dT%H:%M:%S%.6f%:z"))
        if i == 0:
            row = pl.DataFrame(
                {
                    "machine_id": ["M01"],
                    "sensor": ["vibration_mm_s"],
                    "ts": [poison],
                    "value": [1.0],
                }
            )
            frame = pl.concat([frame.head(1000), row, frame.slice(1000)])
        frame.write_csv(folder / f"day-{i}.csv")
    return tmp_path


def _run_history(root: Path, tolerance: timedelta) -> Database:
    settings = PipelineSettings(rules=ReadingRules(max_future=timedelta(days=36500)))
    source = ReplaySource(root / "readings", batch_rows=5000, tolerance=tolerance)
    flow = build_flow(source, ContextStore(root / "erp"), root / "f.duckdb", settings)
    run_main(flow)
    return Database(root / "f.duckdb")


def test_one_reading_of_2100_is_a_dead_letter_and_the_readings_after_it_reach_the_features(
    tmp_path,
):
    root = _plant_history(tmp_path, poison="2100-01-01T00:00:00+00:00")
    valid = pl.concat([pl.read_csv(p) for p in sorted((root / "readings").glob("*.csv"))]).filter(
        ~pl.col("ts").str.starts_with("2100")
    )
    expected = valid.group_by("machine_id", "sensor").len().sort("machine_id", "sensor")
    db = _run_history(root, timedelta(minutes=5))
    got = db.query(
        "SELECT machine_id, sensor, sum(n)::UINTEGER AS len FROM features GROUP BY 1, 2 "
        "ORDER BY 1, 2"
    )
    assert got.rows() == expected.rows()
    dead = db.query("SELECT source, machine_id, reason FROM dead_letters")
    assert dead.rows() == [
        (
            "history",
            "M01",
            "day-0.csv row 1001: ts '2100-01-01T00:00:00+00:00' is outside the file's time "
            "range 2026-01-05T06:00:00+00:00 .. 2026-01-05T06:01:59.900000+00:00 by more than "
            "0:05:00",
        )
    ]


def test_a_time_months_after_the_file_is_caught_by_the_file_range_alone(tmp_path):
    # months after the file but before the wall clock: no rule of a live source catches it, and
    # with a tolerance too wide for the range check it reaches the features (the failure)
    root = _plant_history(tmp_path, poison="2026-06-01T00:00:00+00:00")
    query = "SELECT count(*) AS n FROM features WHERE window_start > '2026-02-01'"
    assert _run_history(root, timedelta(days=365)).query(query)["n"][0] == 1
    (root / "f.duckdb").unlink()
    db = _run_history(root, timedelta(minutes=5))
    assert db.query(query)["n"][0] == 0
    assert db.query("SELECT reason FROM dead_letters")["reason"].to_list() == [
        "day-0.csv row 1001: ts '2026-06-01T00:00:00+00:00' is outside the file's time range "
        "2026-01-05T06:00:00+00:00 .. 2026-01-05T06:01:59.900000+00:00 by more than 0:05:00"
    ]


def _drain(part) -> tuple[list[pl.DataFrame | Checked], list[Position]]:
    items, positions = [], []
    while True:
        try:
            items.extend(part.next_batch())
        except StopIteration:
            return items, positions
        positions.append(part.snapshot())


def _keys(items: list[pl.DataFrame | Checked]) -> list[tuple]:
    out = []
    for item in items:  # a clean batch is a plain frame, one with bad rows a Checked
        c = item if isinstance(item, Checked) else Checked(item, None)
        out += [("ok", *r) for r in c.ok.rows()]
        if c.dead is not None:
            out += [("dead", r) for r in c.dead["reason"].to_list()]
    return out


@pytest.mark.parametrize("partitions", [1, 2])
def test_bad_rows_count_in_the_resume_position(tmp_path, partitions):
    folder = tmp_path / "h"
    folder.mkdir()
    for day in range(2):
        rows = _good_rows(40, T0 + timedelta(days=day))
        for i in range(0, 40, 6):
            rows[i] = rows[i].rsplit(",", 1)[0] + ",bad"
        rows[7] = "," + rows[7].split(",", 1)[1]  # no machine: one partition takes it
        _csv(folder / f"{day}.csv", rows)
    source = ReplaySource(folder, partitions=partitions, batch_rows=4)
    every = []
    for i, part_name in enumerate(source.list_parts()):
        whole, positions = _drain(source.build_part("s", part_name, None))
        every += _keys(whole)
        for k, position in enumerate(positions):
            rest, _ = _drain(source.build_part("s", part_name, position))
            assert _keys(whole[: k + 1]) + _keys(rest) == _keys(whole), (i, k)
    assert len(every) == 80  # every row once: readings plus dead letters
    assert sum(k[0] == "dead" for k in every) == 2 * 7


def test_a_file_that_became_unreadable_during_the_run_is_one_dead_letter(tmp_path):
    folder = tmp_path / "h"
    folder.mkdir()
    _csv(folder / "a.csv", _good_rows(5))
    _csv(folder / "b.csv", _good_rows(5, T0 + timedelta(days=1)))
    source = ReplaySource(folder)
    (folder / "a.csv").write_bytes(b"")  # truncated after the check, before the read
    items, _ = _drain(source.build_part("s", source.list_parts()[0], None))
    keys = _keys(items)
    assert keys[0][0] == "dead" and "a.csv: not a readable readings file" in keys[0][1]
    assert [k[0] for k in keys[1:]] == ["ok"] * 5


def test_the_run_stops_before_it_starts_on_a_naive_file_and_names_the_fix(tmp_path):
    folder = tmp_path / "h"
    folder.mkdir()
    _csv(folder / "a.csv", ["M1,temp,2026-01-05T06:00:00,1"])
    db = tmp_path / "f.duckdb"
    args = ["run", "--history", str(folder), "--context", str(tmp_path / "erp"), "--db", str(db)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2
    output = " ".join(result.output.replace("│", " ").split())
    assert "a.csv: ts times have no time zone" in output and "--time-zone" in output
    assert not db.exists()


def test_replay_orders_text_times_by_their_true_instant(tmp_path):
    frame = pl.DataFrame(
        {
            "t": ["2026-01-05T06:30:00+01:00", "2026-01-05T05:10:00Z", "2026-01-05T06:20:00+02:00"],
            "a": [1.0, 2.0, 3.0],
        }
    )
    got = utc_times(frame, "t", "f.csv")["t"].to_list()
    assert got == [
        datetime(2026, 1, 5, 5, 30, tzinfo=UTC),
        datetime(2026, 1, 5, 5, 10, tzinfo=UTC),
        datetime(2026, 1, 5, 4, 20, tzinfo=UTC),
    ]
    path = tmp_path / "w.csv"
    frame.with_columns(t=pl.Series(["2026-01-05 06:30:00", "nope", "x"])).write_csv(path)
    args = ["replay", str(path), "--time-col", "t", "--out", str(tmp_path / "o.csv")]
    args += ["--time-zone", "UTC"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2 and "w.csv row 2: t 'nope' is not an ISO 8601 time" in (
        " ".join(result.output.replace("│", " ").split())
    )


def test_a_hostile_csv_through_the_real_flow_every_row_is_a_feature_reading_or_a_dead_letter(
    tmp_path,
):
    plant = _plant()  # the context of the tests above: its suites' verdict is cached
    plant.write_context(tmp_path / "erp")
    good = plant.readings(T0, T0 + timedelta(minutes=1)).with_columns(
        pl.col("ts").dt.strftime("%Y-%m-%dT%H:%M:%S%.6f%:z")
    )
    lines = [",".join(str(v) for v in row) for row in good.rows()]
    hostile = [
        "M\x0001,vibration_mm_s,2026-01-05T06:00:10+00:00,1.0",  # NUL in the id
        "M\ud80001,vibration_mm_s,2026-01-05T06:00:10+00:00,1.0",  # invalid UTF-8 in the file
        "M01,vibration_mm_s,2026-01-05T06:00:10.05+00:00," + "9" * 5000,  # a huge number
        "M01,vibration_mm_s,noon,1.0",
        "M01,vibration_mm_s,2100-01-01T00:00:00+00:00,1.0",
        "M01,vibration_mm_s,2026-01-05T06:00:10.05,1.0",  # naive among offsets
        "M01,vibration_mm_s,2026-01-05T07:00:10.05+01:00,NaN",
        "M01,vibration_mm_s,2026-01-05T06:00:10.05Z,",
    ]
    for i, row in enumerate(hostile):
        lines.insert(100 + 50 * i, row)
    folder = tmp_path / "readings"
    folder.mkdir()
    text = "machine_id,sensor,ts,value\n" + "\n".join(lines) + "\n"
    (folder / "day.csv").write_bytes(text.encode("utf-8", "surrogatepass"))
    db = _run_history(tmp_path, timedelta(minutes=5))
    readings = db.query("SELECT sum(n)::BIGINT AS n FROM features")["n"][0]
    dead = db.query("SELECT reason FROM dead_letters")["reason"].to_list()
    assert readings == good.height  # every valid reading is in the features
    assert len(dead) == len(hostile)  # every hostile row is a dead letter, with a reason
    assert all(r for r in dead)
