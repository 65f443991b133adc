"""SKAB's protocol: the metrics on hand-made cases, the engine over SKAB files, file discovery."""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from floorsight.evaluation.skab import (
    FIT_ROWS,
    SKAB_PREDICTION,
    SKAB_SETTINGS,
    Confusion,
    NabTally,
    _tanh_scale,
    detect,
    evaluate,
    labelled_subsets,
    parse_stems,
    pooled,
    score_file,
    skab_files,
    summary,
)
from floorsight.pipelines.backtest import BacktestSettings

T = datetime(2020, 3, 9, 10, 0, 0)
DATA = Path(
    os.environ.get("FLOORSIGHT_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")
)
HEADER = (
    "datetime;Accelerometer1RMS;Accelerometer2RMS;Current;Pressure;Temperature;Thermocouple;"
    "Voltage;Volume Flow RateRMS"
)


def test_binary_metrics_as_skab_defines_them() -> None:
    c = Confusion()
    c.add([1, 1, 1, 1, 0, 0, 0, 0, 0, 0], [1, 1, 1, 0, 1, 0, 0, 0, 0, 0])
    assert (c.tp, c.fn, c.fp, c.tn) == (3, 1, 1, 5)
    assert c.f1 == pytest.approx(3 / (3 + (1 + 1) / 2))
    assert c.far == pytest.approx(100 * 1 / 6)
    assert c.mar == pytest.approx(100 * 1 / 4)


def test_nab_scale_runs_from_a_tp_at_the_window_start_to_a_fp_at_its_end() -> None:
    assert _tanh_scale(0.0, 1.0, -0.11) == pytest.approx(1.0)
    assert _tanh_scale(1.0, 1.0, -0.11) == pytest.approx(-0.11)
    assert _tanh_scale(0.5, 1.0, -0.11) == pytest.approx((1.0 - 0.11) / 2, abs=0.01)


def test_nab_perfect_null_and_false_positives() -> None:
    cps = [T + timedelta(minutes=5), T + timedelta(minutes=20)]
    perfect = NabTally()
    perfect.add(cps, cps)  # detected at each changepoint, i.e. at the window starts
    assert perfect.scores()["standard"] == pytest.approx(100.0)
    null = NabTally()
    null.add(cps, [])
    assert null.scores() == {"standard": 0.0, "low_fp": 0.0, "low_fn": 0.0}
    # one changepoint caught at its start, the other missed, and two false alarms
    mixed = NabTally()
    mixed.add(cps, [cps[0], cps[0] + timedelta(seconds=30), T, T + timedelta(minutes=40)])
    s = 1.0 - 1.0 - 2 * 0.11  # TP + FN + 2 FP (the second detection in a window is ignored)
    assert mixed.scores()["standard"] == pytest.approx(100 * (s - (-2)) / (2 - (-2)))


def test_files_pool_as_one_tally() -> None:
    """Pooling per-file tallies (what the cross-validation does) equals one tally of all."""
    a, b = [1, 0, 1, 1, 0], [0, 0, 1, 1, 1]
    pa, pb = [1, 1, 0, 1, 0], [0, 1, 1, 1, 0]
    whole = Confusion()
    whole.add(a + b, pa + pb)
    one, two = Confusion(), Confusion()
    one.add(a, pa)
    two.add(b, pb)
    one += two
    assert one == whole
    cps = [T + timedelta(minutes=5)]
    x, y, both = NabTally(), NabTally(), NabTally()
    x.add(cps, [cps[0] + timedelta(seconds=10)])
    y.add(cps, [T])
    both.add(cps, [cps[0] + timedelta(seconds=10)])
    both.add(cps, [T])
    x += y
    assert x.scores() == pytest.approx(both.scores())


def test_file_selections_parse() -> None:
    assert parse_stems("8-15") == tuple(str(i) for i in range(8, 16))
    assert parse_stems(" 3, 0-1 ,12") == ("3", "0", "1", "12")
    assert parse_stems("") is None and parse_stems(None) is None
    for bad in ["9-2", "a-3"]:
        with pytest.raises(ValueError, match="bad file range"):
            parse_stems(bad)


def _write(path: Path, rows: int, labelled: bool = True, fault: range = range(0)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [HEADER + (";anomaly;changepoint" if labelled else "")]
    for i in range(rows):
        t = (T + timedelta(seconds=i)).strftime("%Y-%m-%d %H:%M:%S")
        wobble = 0.01 * ((i * 7) % 5)
        flow = 32.0 + wobble - (20.0 if i in fault else 0.0)
        values = [0.026 + wobble / 10, 0.04, 1.33 + wobble, 0.38, 79.3, 26.0, 233.0, flow]
        line = ";".join([t, *(f"{v:g}" for v in values)])
        if labelled:
            cp = int(i in fault and (i == fault.start or i == fault.stop - 1))
            line += f";{float(i in fault)};{float(cp)}"
        lines.append(line)
    path.write_text("\n".join(lines) + "\n")


def test_every_labelled_subfolder_is_found_and_anomaly_free_is_skipped(tmp_path) -> None:
    for name in ("0", "1", "10", "2"):
        _write(tmp_path / "valve2" / f"{name}.csv", 5)
    _write(tmp_path / "other" / "3.csv", 5)
    _write(tmp_path / "anomaly-free" / "anomaly-free.csv", 5, labelled=False)
    (tmp_path / "empty").mkdir()
    assert labelled_subsets(tmp_path) == ("other", "valve2")
    found = [f"{p.parent.name}/{p.name}" for p in skab_files(tmp_path)]
    assert found == ["other/3.csv", "valve2/0.csv", "valve2/1.csv", "valve2/2.csv", "valve2/10.csv"]
    assert [p.name for p in skab_files(tmp_path, ("valve2",), ("1", "10"))] == ["1.csv", "10.csv"]
    with pytest.raises(FileNotFoundError, match=r"valve2/\{7\}\.csv"):
        skab_files(tmp_path, ("valve2",), ("7",))
    with pytest.raises(FileNotFoundError, match="no SKAB files"):
        skab_files(tmp_path / "empty")


def test_a_fault_in_the_flow_is_found_after_the_fit_rows(tmp_path) -> None:
    """A drop of the flow rate far beyond its noise, after 400 quiet rows: the default
    detector is quiet before it and flags most of it; only rows after the fit rows are
    scored; what it flags after the fault is the alert's hysteresis (clear_after windows)."""
    path = tmp_path / "valve1" / "0.csv"
    _write(path, 700, fault=range(500, 600))
    frame = pl.read_csv(path, separator=";").with_columns(
        pl.col("datetime").str.to_datetime("%Y-%m-%d %H:%M:%S")
    )
    flags = detect(frame)["outlier"].to_list()
    assert sum(flags[:500]) == 0
    assert sum(flags[500:600]) > 60
    assert sum(flags[600:]) <= (SKAB_SETTINGS.clear_after + 1) * 10
    result = evaluate([path])
    o = result["outliers"]
    assert o["tp"] + o["fp"] + o["tn"] + o["fn"] == 700 - FIT_ROWS
    assert o["tp"] == sum(flags[500:600]) and o["fp"] == sum(flags[600:])
    assert result["per_file"][0]["file"] == "valve1/0.csv"
    lines = summary(result)
    assert lines[2].startswith("floorsight (online)")
    assert any(line.startswith("Conv-AE (paper)") for line in lines)


def test_detections_stay_aligned_with_the_labels_and_the_frame_must_be_ordered(tmp_path) -> None:
    path = tmp_path / "valve1" / "0.csv"
    _write(path, 600, fault=range(450, 520))
    frame = pl.read_csv(path, separator=";").with_columns(
        pl.col("datetime").str.to_datetime("%Y-%m-%d %H:%M:%S")
    )
    out = detect(frame, BacktestSettings(window=None))
    assert out["datetime"].to_list() == frame["datetime"].to_list()
    alert = detect(frame, SKAB_SETTINGS, prediction="alert")
    flagged = detect(frame, SKAB_SETTINGS, prediction="is_anomaly")
    # the open alert needs flagged windows first: it starts no earlier than the flags
    assert alert["outlier"].arg_max() >= flagged["outlier"].arg_max()
    score = score_file(frame, out)
    assert pooled([score])["outliers"]["tp"] == score.outliers.tp
    with pytest.raises(ValueError, match="time order"):
        detect(frame.reverse())
    with pytest.raises(ValueError, match="prediction"):
        detect(frame, prediction="score")


needs_skab = pytest.mark.skipif(
    not (DATA / "skab" / "valve1").exists(), reason=f"no SKAB data at {DATA / 'skab'}"
)


@needs_skab
def test_evaluate_on_two_files_scores_only_rows_after_the_fit_rows() -> None:
    files = skab_files(DATA / "skab", ("valve1",), ("0", "1"))
    result = evaluate(files)
    rows = sum(pl.read_csv(f, separator=";").height for f in files)
    o = result["outliers"]
    assert o["tp"] + o["fp"] + o["tn"] + o["fn"] == rows - 2 * FIT_ROWS
    assert [r["file"] for r in result["per_file"]] == ["valve1/0.csv", "valve1/1.csv"]
    assert set(result["changepoints_nab"]) == {"standard", "low_fp", "low_fn"}
    assert result["settings"]["score_model"] == SKAB_SETTINGS.score_model
    assert 0.0 <= o["f1"] <= 1.0


def test_the_default_is_a_candidate_of_the_written_protocol() -> None:
    """SKAB_SETTINGS is one of the grid benchmarks/skab_selection.py chooses from (the run
    that chose it: docs/accuracy-skab.md), reading every sensor."""
    import importlib.util
    import sys

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "skab_selection.py"
    spec = importlib.util.spec_from_file_location("skab_selection", path)
    selection = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("skab_selection", selection)  # its dataclasses look it up
    spec.loader.exec_module(selection)
    grid = selection.candidates()
    assert [(c.settings, c.prediction) for c in grid].count((SKAB_SETTINGS, SKAB_PREDICTION)) == 1
    folds = tuple(tuple(str(i) for i in range(k, k + 4)) for k in (0, 4, 8, 12))
    assert folds == selection.FOLDS
