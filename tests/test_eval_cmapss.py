"""``floorsight eval cmapss``: the metrics on hand-made numbers, the file reader, the cuts, and
both protocols on a tiny hand-made data folder."""

from __future__ import annotations

import math
import random
from pathlib import Path

import polars as pl
import pytest

from floorsight.evaluation import cmapss
from floorsight.models.fleet import LabelSettings


def test_rmse_and_the_phm08_score_on_hand_made_numbers() -> None:
    assert cmapss.rmse([1.0, 2.0, 3.0], [1.0, 2.0, 5.0]) == pytest.approx(math.sqrt(4 / 3))
    # 10 early costs exp(10/13) - 1, 10 late costs exp(1) - 1: late is dearer
    early = cmapss.phm08_score([10.0], [20.0])
    late = cmapss.phm08_score([20.0], [10.0])
    assert early == pytest.approx(math.exp(10 / 13) - 1)
    assert late == pytest.approx(math.e - 1)
    assert cmapss.phm08_score([10.0, 20.0], [20.0, 10.0]) == pytest.approx(early + late)
    assert cmapss.phm08_score([5.0], [5.0]) == 0.0
    with pytest.raises(ValueError):
        cmapss.rmse([], [])


def _write_engines(path: Path, lives: dict[int, int], seed: int, cut: dict[int, int] | None = None):
    """C-MAPSS-format rows (with the trailing spaces of NASA's files): a wear signal in s2
    and s3 rising to failure, constant settings and other sensors."""
    rng = random.Random(seed)
    lines = []
    for unit, life in lives.items():
        last = cut[unit] if cut else life
        for cycle in range(1, last + 1):
            wear = cycle / life
            sensors = [518.67, 642.0 + 2 * wear + rng.gauss(0, 0.05), 1580 + 20 * wear]
            sensors += [1.0] * 18
            fields = [unit, cycle, 0.0, 0.0, 100.0, *sensors]
            lines.append(" ".join(f"{v:g}" for v in fields) + "  ")
    path.write_text("\n".join(lines) + "\n")


def test_the_reader_gives_the_26_named_columns_and_the_training_rul(tmp_path: Path) -> None:
    _write_engines(tmp_path / "train_FD001.txt", {1: 5, 2: 3}, seed=0)
    frame = cmapss.with_rul(cmapss.read_cmapss(tmp_path / "train_FD001.txt"))
    assert frame.columns == [*cmapss.COLUMNS, "rul"]
    assert frame.height == 8
    assert frame["unit"].dtype == pl.Int64
    assert frame.filter(pl.col("unit") == 1)["rul"].to_list() == [4.0, 3.0, 2.0, 1.0, 0.0]
    (tmp_path / "bad.txt").write_text("1 2 3\n")
    with pytest.raises(ValueError, match="3 columns"):
        cmapss.read_cmapss(tmp_path / "bad.txt")


def test_cuts_keep_enough_rows_leave_life_and_are_seeded(tmp_path: Path) -> None:
    _write_engines(tmp_path / "t.txt", {1: 200, 2: 60, 3: 32}, seed=0)
    frame = cmapss.with_rul(cmapss.read_cmapss(tmp_path / "t.txt"))
    cut, truth = cmapss.truncate(frame, [1, 2, 3], cuts=20, seed=4, max_rul=150, min_cycles=31)
    assert len(truth) == 60
    lives = {1: 200, 2: 60, 3: 32}
    for name, rows in cut.group_by("unit"):
        unit = int(name[0].split("/")[0])
        kept = rows.height
        assert kept >= 31 or lives[unit] <= 31
        assert 1 <= truth[name[0]] <= 150
        assert truth[name[0]] == lives[unit] - kept  # the true RUL is what the cut left
        assert rows["rul"].null_count() == kept  # held out: no label
    _, truth_again = cmapss.truncate(frame, [1, 2, 3], cuts=20, seed=4)
    assert truth_again == truth
    assert len({t for n, t in truth.items() if n.startswith("1/")}) > 5  # the cuts vary


def test_the_training_fleet_comes_before_the_test_engines(tmp_path: Path) -> None:
    _write_engines(tmp_path / "t.txt", {1: 40, 2: 50, 3: 45}, seed=0)
    frame = cmapss.with_rul(cmapss.read_cmapss(tmp_path / "t.txt"))
    test, _ = cmapss.truncate(frame, [3], cuts=2, seed=0, min_cycles=5)
    stream = cmapss.fleet_stream(frame.filter(pl.col("unit") != 3), test, seed=1)
    train_rows = stream.filter(pl.col("rul").is_not_null())
    test_rows = stream.filter(pl.col("rul").is_null())
    assert train_rows.height == 90
    assert train_rows["time"].max() < test_rows["time"].min()
    assert stream["time"].is_sorted()
    # each engine's own rows stay in cycle order
    for _, rows in train_rows.group_by("unit"):
        assert rows["rul"].to_list() == sorted(rows["rul"].to_list(), reverse=True)


def test_the_official_protocol_on_a_tiny_folder(tmp_path: Path) -> None:
    rng = random.Random(7)
    train_lives = {u: rng.randint(60, 120) for u in range(1, 13)}
    _write_engines(tmp_path / "train_FD001.txt", train_lives, seed=1)
    test_lives = {1: 90, 2: 100, 3: 70}
    cut = {1: 60, 2: 40, 3: 65}
    _write_engines(tmp_path / "test_FD001.txt", test_lives, seed=2, cut=cut)
    true = [test_lives[u] - cut[u] for u in (1, 2, 3)]
    (tmp_path / "RUL_FD001.txt").write_text("\n".join(str(t) for t in true) + "\n")
    result = cmapss.evaluate(tmp_path, cap=125, settings=LabelSettings(model="bayes"))
    assert result["protocol"] == "official"
    assert result["engines"] == 3
    assert result["true"] == [float(t) for t in true]
    assert result["rmse"] == pytest.approx(cmapss.rmse(result["predicted"], result["true"]))
    assert result["rmse"] < 20  # the wear signal tells the remaining life
    assert any("official" in line for line in cmapss.summary(result))
    (tmp_path / "RUL_FD001.txt").write_text("10\n20\n")
    with pytest.raises(ValueError, match="2 RUL values for 3 test engines"):
        cmapss.evaluate(tmp_path)


def test_cross_validation_without_the_test_files(tmp_path: Path) -> None:
    rng = random.Random(3)
    _write_engines(
        tmp_path / "train_FD001.txt", {u: rng.randint(60, 120) for u in range(1, 11)}, seed=1
    )
    result = cmapss.evaluate(tmp_path, folds=2, cuts=2, settings=LabelSettings(model="bayes"))
    assert result["train_engines"] == 10
    assert result["engines"] == 20  # 2 cuts of each engine, each scored once
    assert 0.0 <= result["coverage"] <= 1.0
    assert result["rmse"] < 30
    assert "cross-validation" in cmapss.summary(result)[0]
