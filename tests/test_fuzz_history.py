"""Fuzzing the history reader: random and mutated CSV and Parquet files.

Whatever a file holds, ``read_history`` either refuses the whole file with ``HistoryError`` (the
documented refusal: no readings file, or naive times without a zone) or accounts for every row:
rows = readings + dead letters, and every reading it takes is a well-formed one.
"""

from __future__ import annotations

import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from floorsight.pipelines.replay import HistoryError, read_history
from floorsight.records import READING_SCHEMA

T0 = datetime(2026, 1, 5, 6, tzinfo=UTC)
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

_OFFSETS = st.sampled_from(["Z", "+00:00", "+01:00", "-05:30", "+0100", "+14:00", "", " +01:00"])
_SEPARATORS = st.sampled_from(["T", " ", "t"])


@st.composite
def _iso(draw) -> str:
    """An ISO 8601 time near T0 in one of the forms files have (mixed offsets, naive)."""
    when = T0 + timedelta(
        seconds=draw(st.integers(0, 3600)), microseconds=draw(st.integers(0, 999_999))
    )
    text = when.strftime("%Y-%m-%d") + draw(_SEPARATORS) + when.strftime("%H:%M:%S")
    if draw(st.booleans()):
        text += f".{when.microsecond:06d}"[: draw(st.integers(2, 7))]
    return text + draw(_OFFSETS)


# text without the CSV's own structure (separator, quote, line breaks): one cell stays one cell
_CELL_TEXT = st.text(
    alphabet=st.characters(
        blacklist_characters=',"\r\n',
        blacklist_categories=("Cs",),
    ),
    max_size=30,
)
_HOSTILE_CELLS = st.one_of(
    _CELL_TEXT,
    st.sampled_from(
        [
            "",
            " ",
            "\x00",
            "noon",
            "NaN",
            "inf",
            "-1e400",
            "1e308",
            "9" * 5000,
            "2100-01-01T00:00:00Z",
            "1970-01-01T00:00:00Z",
            "+12026-01-05T06:00:00Z",
            "0001-01-01T00:00:00+14:00",
            "9999-12-31T23:59:59-14:00",
            "2026-02-30T06:00:00Z",
            "2026-01-05T25:00:00Z",
            "2026-01-05",
            "\u202e2026-01-05T06:00:00Z",
            "x" * 10_000,
        ]
    ),
)


@st.composite
def _csv_rows(draw) -> list[list[str]]:
    n = draw(st.integers(0, 60))
    rows = []
    for i in range(n):
        row = [
            draw(st.sampled_from(["M1", "M2", "M3"])),
            draw(st.sampled_from(["temp", "vib"])),
            draw(_iso()),
            repr(draw(st.floats(-1e6, 1e6))),
        ]
        for c in range(4):  # each cell mutated with some chance
            if draw(st.integers(0, 9)) == 0:
                row[c] = draw(_HOSTILE_CELLS)
        rows.append(row)
        del i
    return rows


def _write_csv(path: Path, rows: list[list[str]], lone_surrogates: bool) -> None:
    text = "machine_id,sensor,ts,value\n" + "".join(",".join(r) + "\n" for r in rows)
    if lone_surrogates:  # what a broken exporter writes: invalid UTF-8 in the file
        text = text.replace("M2", "M\ud8002")
    path.write_bytes(text.encode("utf-8", "surrogatepass"))


def _assert_accounted(path: Path, rows: int) -> None:
    try:
        checked = read_history(path)
    except HistoryError as e:
        # the only whole-file refusal a file with the columns can get: naive times, no zone
        assert "no time zone" in str(e) and path.name in str(e)
        return
    dead = 0 if checked.dead is None else checked.dead.height
    assert checked.ok.height + dead == rows
    assert checked.ok.schema == pl.Schema(READING_SCHEMA)
    assert checked.ok["ts"].null_count() == 0 and checked.ok["value"].null_count() == 0
    assert checked.ok["ts"].is_sorted()
    if checked.dead is not None:
        assert checked.dead["reason"].str.starts_with(f"{path.name} row ").all()
        assert checked.dead["dead_letter_id"].n_unique() == dead  # one dead letter per row


@FUZZ
@given(rows=_csv_rows(), surrogates=st.booleans())
def test_mutated_csv_every_row_is_a_reading_or_a_dead_letter(rows, surrogates) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fuzz.csv"
        _write_csv(path, rows, surrogates)
        _assert_accounted(path, len(rows))


@FUZZ
@given(body=st.binary(max_size=2000), header=st.booleans())
def test_random_bytes_are_refused_or_accounted_for(body, header) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bytes.csv"
        path.write_bytes((b"machine_id,sensor,ts,value\n" if header else b"") + body)
        try:
            checked = read_history(path)
        except HistoryError as e:
            assert "bytes.csv" in str(e)
            return
        # as many rows as the file has for a lenient CSV reader: none lost, none invented
        rows = pl.read_csv(
            path, infer_schema=False, encoding="utf8-lossy", truncate_ragged_lines=True
        ).height
        dead = 0 if checked.dead is None else checked.dead.height
        assert checked.ok.height + dead == rows


_PARQUET_TS = st.one_of(
    st.lists(st.one_of(_iso(), _HOSTILE_CELLS, st.none()), min_size=1, max_size=30).map(
        lambda v: pl.Series("ts", v, dtype=pl.String)
    ),
    st.lists(
        st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)),
        min_size=1,
        max_size=30,
    ).map(lambda v: pl.Series("ts", v).dt.replace_time_zone("UTC")),
    st.lists(st.integers(-(2**62), 2**62), min_size=1, max_size=30).map(
        lambda v: pl.Series("ts", v, dtype=pl.Int64)
    ),
)
_PARQUET_VALUE = st.one_of(
    st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=1, max_size=30),
    st.lists(st.integers(-(2**63), 2**63 - 1), min_size=1, max_size=30),
    st.lists(st.booleans(), min_size=1, max_size=30),
    st.lists(st.one_of(_HOSTILE_CELLS, st.none()), min_size=1, max_size=30),
)


@FUZZ
@given(ts=_PARQUET_TS, values=_PARQUET_VALUE, ids=st.lists(_CELL_TEXT, min_size=1, max_size=3))
def test_parquet_of_any_column_types_every_row_is_a_reading_or_a_dead_letter(
    ts, values, ids
) -> None:
    n = min(ts.len(), len(values))
    frame = pl.DataFrame(
        {
            "machine_id": [ids[i % len(ids)] for i in range(n)],
            "sensor": ["temp"] * n,
            "ts": ts.head(n),
            "value": pl.Series(values[:n]),
        }
    )
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fuzz.parquet"
        frame.write_parquet(path)
        _assert_accounted(path, n)


@FUZZ
@given(body=st.binary(max_size=3000), keep=st.integers(0, 3000))
def test_random_or_truncated_parquet_is_refused_with_its_name(body, keep) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        good = Path(tmp) / "good.parquet"
        pl.DataFrame(
            {"machine_id": ["M1"], "sensor": ["t"], "ts": [T0], "value": [1.0]}
        ).write_parquet(good)
        data = good.read_bytes()
        path = Path(tmp) / "broken.parquet"
        path.write_bytes(data[:keep] + body if keep < len(data) else body)
        try:
            checked = read_history(path)
        except HistoryError as e:
            assert "broken.parquet" in str(e)
            return
        dead = 0 if checked.dead is None else checked.dead.height
        assert checked.ok.height + dead == pl.read_parquet(path).height
