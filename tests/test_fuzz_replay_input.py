"""Fuzzing ``floorsight replay``'s input (hypothesis, bounded): CSV and Parquet files of a time
column and sensor columns with hostile cells (text in number columns, NaN, inf, huge numbers,
empty cells, times with and without offsets, times that are no times, duplicate and unordered
times), and random bytes.

What must hold: the command either writes one output row per input row, in time order, with
every score finite and in 0..1, or refuses the file with a usage error (exit 2) whose message
says what is wrong; it never crashes (an uncaught exception) and never drops or invents rows
silently.
"""

from __future__ import annotations

import math

import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from floorsight.cli import app

TIMES = st.one_of(
    st.sampled_from(
        [
            "2024-01-01 00:00:00",
            "2024-01-01 00:00:01",
            "2024-01-01T00:00:05+01:00",
            "2024-01-01 00:00:30Z",
            "2024-02-30 00:00:00",
            "yesterday",
            "",
            "nan",
            "1e309",
        ]
    ),
    st.integers(-5, 50).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
)
CELLS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(-(10**20), 10**20).map(str),
    st.sampled_from(["", "nan", "NaN", "inf", "-inf", "x", "1,5", "TRUE", '"q"']),
)
FLAGS = st.sampled_from([["--window", "row"], ["--window", "10s"], ["--window", "1s"]])


def _csv(times: list[str], columns: list[list[str]]) -> str:
    head = ",".join(["t", *(f"s{i}" for i in range(len(columns)))])
    rows = [",".join([t, *(c[k] for c in columns)]) for k, t in enumerate(times)]
    return "\n".join([head, *rows]) + "\n"


@st.composite
def csv_files(draw) -> str:
    n = draw(st.integers(0, 25))
    times = draw(st.lists(TIMES, min_size=n, max_size=n))
    width = draw(st.integers(0, 3))
    columns = [draw(st.lists(CELLS, min_size=n, max_size=n)) for _ in range(width)]
    return _csv(times, columns)


def _check(result, rows: int | None, out) -> None:
    """Written whole and sound, or refused with a message; never a crash."""
    if result.exit_code == 2:
        assert result.output.strip(), "a refusal says why"
        return
    assert result.exception is None, repr(result.exception)
    assert result.exit_code == 0, result.output
    got = pl.read_csv(out, infer_schema_length=0)
    if rows is not None:
        assert got.height == rows, "a row was dropped or invented silently"
    for value in got["anomaly_score"].cast(pl.Float64, strict=False).to_list():
        assert value is not None and math.isfinite(value) and 0.0 <= value <= 1.0


def _replay(path, out, flags: list[str]):
    return CliRunner().invoke(
        app,
        [
            *("replay", str(path), "--time-col", "t", "--out", str(out)),
            *("--time-zone", "UTC", "--no-progress", *flags),
        ],
    )


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(text=csv_files(), flags=FLAGS)
def test_any_csv_is_replayed_whole_or_refused(tmp_path, text, flags) -> None:
    path, out = tmp_path / "in.csv", tmp_path / "out.csv"
    path.write_text(text)
    out.unlink(missing_ok=True)
    _check(_replay(path, out, flags), text.count("\n") - 1, out)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.binary(max_size=300), suffix=st.sampled_from([".csv", ".parquet"]))
def test_any_bytes_are_refused_or_replayed(tmp_path, data, suffix) -> None:
    path, out = tmp_path / f"in{suffix}", tmp_path / "out.csv"
    path.write_bytes(data)
    out.unlink(missing_ok=True)
    _check(_replay(path, out, ["--window", "row"]), None, out)


FLOATS = st.floats(allow_nan=True, allow_infinity=True)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    seconds=st.lists(st.one_of(st.none(), st.integers(-(10**6), 10**6)), max_size=20),
    values=st.lists(st.one_of(st.none(), FLOATS), max_size=20),
    text=st.booleans(),
    flags=FLAGS,
)
def test_any_parquet_is_replayed_whole_or_refused(tmp_path, seconds, values, text, flags) -> None:
    n = min(len(seconds), len(values))
    frame = pl.DataFrame(
        {"t": seconds[:n], "v": values[:n]}, schema={"t": pl.Int64, "v": pl.Float64}
    ).with_columns(t=pl.from_epoch("t", time_unit="s").dt.replace_time_zone("UTC"))
    if text:  # a sensor column of text, as a careless export writes it
        frame = frame.with_columns(w=pl.col("v").cast(pl.String))
    path, out = tmp_path / "in.parquet", tmp_path / "out.csv"
    frame.write_parquet(path)
    out.unlink(missing_ok=True)
    _check(_replay(path, out, flags), n, out)
