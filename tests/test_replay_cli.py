"""``floorsight replay``: the detectors over a history file, with progressive validation."""

from __future__ import annotations

import math

import polars as pl
import pytest
from typer.testing import CliRunner

from floorsight.cli import app
from floorsight.models.replay import replay_frame

runner = CliRunner()


def _series(n: int = 600, spike_at: int = 400) -> pl.DataFrame:
    # two smooth sensors with small deterministic noise; one huge spike on both at `spike_at`
    rows = []
    for i in range(n):
        a = 10 + 0.1 * math.sin(i / 7) + 0.05 * math.sin(i * 12.9898)
        b = 5 + 0.1 * math.cos(i / 5) + 0.05 * math.sin(i * 78.233)
        if i == spike_at:
            a, b = a + 5, b + 5
        rows.append({"t": i, "machine": "M1", "a": a, "b": b, "label": int(a > 10.05)})
    return pl.DataFrame(rows)


def test_the_contract_columns_one_row_per_input_row(tmp_path) -> None:
    path = tmp_path / "h.csv"
    _series().sample(fraction=1.0, shuffle=True, seed=1).write_csv(path)  # out of time order
    out = tmp_path / "out.csv"
    result = runner.invoke(
        app,
        [
            *("replay", str(path), "--time-col", "t", "--entity-col", "machine"),
            *("--label-col", "label", "--label-delay", "5", "--out", str(out)),
        ],
    )
    assert result.exit_code == 0, result.output
    got = pl.read_csv(out)
    assert got.columns == [
        "t",
        "machine",
        "anomaly_score",
        "is_anomaly",
        "changepoint",
        "prediction",
    ]
    assert got["t"].to_list() == list(range(600))  # replayed in time order
    assert got["anomaly_score"].is_between(0, 1).all()
    # the spike is flagged, and the detector's grace period flags nothing
    assert got.filter(pl.col("is_anomaly") == 1)["t"].to_list() == [400]


def test_progressive_validation_learns_only_labels_already_known() -> None:
    frame = _series()
    # a delay as long as the file: no label is ever known, so the model never learns
    never = replay_frame(frame, "t", "machine", "label", label_delay=len(frame))
    assert never["prediction"].n_unique() == 1
    # known one row later: the separable label is learned; late predictions are mostly right
    online = replay_frame(frame, "t", "machine", "label", label_delay=1)
    late = online.join(frame.select("t", "label"), on="t").filter(pl.col("t") >= 300)
    assert (late["prediction"] == late["label"]).mean() > 0.9
    # empty labels are predicted but never learned
    unlabeled = replay_frame(
        frame.with_columns(label=pl.lit(None, dtype=pl.Int64)), "t", "machine", "label"
    )
    assert unlabeled["prediction"].null_count() == 0 and unlabeled["prediction"].n_unique() == 1


def test_bad_arguments_name_the_problem(tmp_path) -> None:
    path = tmp_path / "h.csv"
    _series(50).write_csv(path)
    result = runner.invoke(
        app, ["replay", str(path), "--time-col", "nope", "--out", str(tmp_path / "o.csv")]
    )
    assert result.exit_code != 0 and "no column 'nope'" in result.output
    with pytest.raises(ValueError, match="label delay"):
        replay_frame(_series(50), "t", label_col="label", label_delay=-1)
