"""``floorsight eval cmapss``: the fleet label model (:mod:`floorsight.models.fleet`) on NASA's
C-MAPSS FD001 turbofan engines, scored as published: RMSE and the PHM08 score of the remaining
useful life predicted at each test engine's last cycle.

Two protocols, by what the data folder holds:

- **official** (``test_FD001.txt`` and ``RUL_FD001.txt`` present): the model learns online from
  every training engine (``train_FD001.txt``, all labels, ``label_delay`` 0), then the test
  engines are replayed with empty labels (predicted, never learned); the prediction at each test
  engine's last cycle is scored against ``RUL_FD001.txt`` (the true RUL, uncapped);
- **cross-validation** (only ``train_FD001.txt``): leave-engines-out K-fold. Each fold's
  held-out engines are cut at random cycles (seeded; ``cuts`` independent cuts per engine, each
  replayed as its own entity, as the official test set cuts engines before failure) and
  replayed with empty labels after the other engines' whole lives; the prediction at the cut is
  scored against the true RUL there (uncapped), and against it capped at ``cap``.

The training engines are past history whose labels are all known, so they are learned at once
(``label_delay`` 0). They are replayed as a fleet in service: each engine starts at a seeded
random offset, so the stream mixes young and old engines as a plant's would; the held-out
engines come after the last training row.

Everything runs through :func:`floorsight.pipelines.backtest.backtest` (the pipeline's own
engine) when it is there, else through :func:`replay_labels` (the label model alone, the same
calls in the same order).
"""

from __future__ import annotations

import math
import random
import time
from pathlib import Path

import polars as pl

from floorsight.models.fleet import FleetLabels, LabelSettings

SETTINGS = ["setting1", "setting2", "setting3"]
SENSORS = [f"s{i}" for i in range(1, 22)]
COLUMNS = ["unit", "cycle", *SETTINGS, *SENSORS]
#: the cap of the piece-wise linear RUL target in ``floorsight eval cmapss``
CAP = 125.0
#: the cross-validation's cuts: the true RUL left at a cut is at most MAX_RUL cycles (the
#: official FD001 test engines' true RUL is 7..145) and at least MIN_CYCLES rows are kept
#: (the shortest official test engine has 31)
MAX_RUL = 150
MIN_CYCLES = 31


def read_cmapss(path: Path) -> pl.DataFrame:
    """One C-MAPSS file (space-separated, no header, 26 columns): unit, cycle, settings, s1-s21."""
    rows = []
    for number, line in enumerate(Path(path).read_text().splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split()
        if len(fields) != len(COLUMNS):
            raise ValueError(f"{path}:{number}: {len(fields)} columns, expected {len(COLUMNS)}")
        rows.append([float(f) for f in fields])
    frame = pl.DataFrame(rows, schema=COLUMNS, orient="row")
    return frame.with_columns(pl.col("unit", "cycle").cast(pl.Int64))


def read_rul(path: Path) -> list[float]:
    """``RUL_FD00x.txt``: the true remaining useful life of each test engine, in unit order."""
    return [float(line) for line in Path(path).read_text().split()]


def with_rul(frame: pl.DataFrame) -> pl.DataFrame:
    """The training rows' remaining useful life: the unit's last cycle minus the row's cycle."""
    return frame.with_columns(
        rul=(pl.col("cycle").max().over("unit") - pl.col("cycle")).cast(pl.Float64)
    )


def rmse(predicted: list[float], true: list[float]) -> float:
    """Root mean squared error."""
    if len(predicted) != len(true) or not predicted:
        raise ValueError("rmse needs two lists of the same, non-zero length")
    return math.sqrt(sum((p - t) ** 2 for p, t in zip(predicted, true, strict=True)) / len(true))


def phm08_score(predicted: list[float], true: list[float]) -> float:
    """The PHM08 challenge score: sum of exp(-d/13) - 1 for early (d < 0) and exp(d/10) - 1
    for late predictions, d = predicted - true (late ones cost more; 0 is perfect)."""
    if len(predicted) != len(true):
        raise ValueError("phm08_score needs two lists of the same length")
    total = 0.0
    for p, t in zip(predicted, true, strict=True):
        d = p - t
        total += math.exp(-d / 13) - 1 if d < 0 else math.exp(d / 10) - 1
    return total


def truncate(
    frame: pl.DataFrame,
    units: list[int],
    cuts: int,
    seed: int,
    max_rul: int = MAX_RUL,
    min_cycles: int = MIN_CYCLES,
) -> tuple[pl.DataFrame, dict[str, float]]:
    """Each of ``units`` cut ``cuts`` times at a random cycle, each cut its own entity.

    The true RUL at the cut is drawn uniformly from ``1 .. max_rul``, within what keeps at
    least ``min_cycles`` rows of the engine, seeded. Returns the cut rows (``unit`` becomes
    ``"<unit>/<k>"``, ``rul`` empty) and the true RUL at each cut, by entity.
    """
    rng = random.Random(seed)
    parts, truth = [], {}
    for unit in units:
        engine = frame.filter(pl.col("unit") == unit)
        life = int(engine["cycle"].max())
        for k in range(cuts):
            cut = life - rng.randint(1, max(1, min(max_rul, life - min_cycles)))
            name = f"{unit}/{k}"
            truth[name] = float(life - cut)
            parts.append(
                engine.filter(pl.col("cycle") <= cut).with_columns(
                    unit=pl.lit(name), rul=pl.lit(None, dtype=pl.Float64)
                )
            )
    return pl.concat(parts), truth


def fleet_stream(train: pl.DataFrame, test: pl.DataFrame, seed: int) -> pl.DataFrame:
    """Training engines (with ``rul``) as a fleet in service, then the test engines (``rul``
    empty): one frame with a ``time`` column in that order and ``unit`` as a string."""
    rng = random.Random(seed)
    units = train["unit"].unique(maintain_order=True).to_list()
    longest = int(train["cycle"].max())
    offsets = pl.DataFrame(
        {"unit": units, "start": [rng.randrange(longest) for _ in units]},
        schema={"unit": train["unit"].dtype, "start": pl.Int64},
    )
    train = train.join(offsets, on="unit").with_columns(
        time=pl.col("start") + pl.col("cycle"), unit=pl.col("unit").cast(pl.Utf8)
    )
    end = int(train["time"].max())
    test = test.with_columns(time=end + pl.col("cycle"), unit=pl.col("unit").cast(pl.Utf8))
    columns = ["time", "unit", *SETTINGS, *SENSORS, "rul"]
    return pl.concat([train.select(columns), test.select(columns)]).sort(
        "time", maintain_order=True
    )


def replay_labels(
    frame: pl.DataFrame,
    time_col: str,
    entity_col: str,
    label_col: str,
    label_delay: int = 0,
    settings: LabelSettings | None = None,
) -> pl.DataFrame:
    """The label model alone over a frame, row by row in time order: time, entity,
    ``prediction``, ``prediction_low``, ``prediction_high`` (what the backtest's label columns
    are)."""
    skip = {time_col, entity_col, label_col}
    sensors = [c for c in frame.columns if c not in skip and frame[c].dtype.is_numeric()]
    data = frame.with_row_index("_row").sort(time_col, "_row")
    labels = data[label_col].drop_nulls()
    classify = bool(labels.len()) and bool(labels.is_in([0.0, 1.0]).all())
    model = FleetLabels(sensors, classify=classify, label_delay=label_delay, settings=settings)
    out = []
    for entity, label, values in zip(
        data[entity_col].to_list(),
        data[label_col].to_list(),
        data.select(sensors).iter_rows(),
        strict=True,
    ):
        x = {s: v for s, v in zip(sensors, values, strict=True) if v is not None}
        out.append(model.step(entity, x, label))
    return data.select(time_col, entity_col).with_columns(
        prediction=pl.Series([p for p, _, _ in out], dtype=pl.Float64),
        prediction_low=pl.Series([lo for _, lo, _ in out], dtype=pl.Float64),
        prediction_high=pl.Series([hi for _, _, hi in out], dtype=pl.Float64),
    )


def _run(stream: pl.DataFrame, settings: LabelSettings) -> pl.DataFrame:
    try:
        from floorsight.pipelines.backtest import BacktestSettings, backtest
    except ImportError:
        return replay_labels(stream, "time", "unit", "rul", 0, settings)
    return backtest(
        stream, "time", "unit", "rul", label_delay=0, settings=BacktestSettings(labels=settings)
    )


def _score(out: pl.DataFrame, truth: dict[str, float], cap: float | None) -> dict:
    last = out.group_by("unit", maintain_order=True).last()
    last = last.filter(pl.col("unit").is_in(list(truth)))
    names = last["unit"].to_list()
    if len(names) != len(truth):
        raise ValueError(f"{len(truth) - len(names)} test engines without a row in the output")
    predicted = [p if p is not None else 0.0 for p in last["prediction"].to_list()]
    true = [truth[n] for n in names]
    result = {
        "engines": len(names),
        "rmse": rmse(predicted, true),
        "phm08": phm08_score(predicted, true),
        "predicted": predicted,
        "true": true,
    }
    if cap is not None:
        result["rmse_capped"] = rmse(predicted, [min(t, cap) for t in true])
    lows, highs = last["prediction_low"].to_list(), last["prediction_high"].to_list()
    if all(v is not None for v in lows + highs):
        capped = [min(t, cap) if cap is not None else t for t in true]
        result["coverage"] = _coverage(lows, highs, true)
        result["coverage_capped"] = _coverage(lows, highs, capped)
        result["mean_width"] = sum(h - lo for lo, h in zip(lows, highs, strict=True)) / len(lows)
    return result


def _coverage(lows: list[float], highs: list[float], true: list[float]) -> float:
    inside = sum(lo <= t <= hi for lo, hi, t in zip(lows, highs, true, strict=True))
    return inside / len(true)


def evaluate(
    data: Path,
    cap: float | None = CAP,
    folds: int = 5,
    settings: LabelSettings | None = None,
    cuts: int = 5,
    seed: int = 0,
    units: list[int] | None = None,
) -> dict:
    """The figures of ``floorsight eval cmapss`` on FD001 in ``data`` (see the module docstring).

    ``settings`` (its ``cap`` replaced by ``cap``) is the label model's; ``units`` restricts the
    cross-validation to those training engines (the selection benchmark's inner folds).
    """
    from dataclasses import replace

    data = Path(data)
    settings = replace(settings or LabelSettings(), cap=cap)
    train = with_rul(read_cmapss(data / "train_FD001.txt"))
    if units is not None:
        train = train.filter(pl.col("unit").is_in(units))
    test_path, rul_path = data / "test_FD001.txt", data / "RUL_FD001.txt"
    started = time.perf_counter()
    if test_path.exists() and rul_path.exists():
        test = read_cmapss(test_path).with_columns(rul=pl.lit(None, dtype=pl.Float64))
        true = read_rul(rul_path)
        test_units = test["unit"].unique(maintain_order=True).to_list()
        if len(true) != len(test_units):
            raise ValueError(f"{len(true)} RUL values for {len(test_units)} test engines")
        test = test.with_columns(unit=pl.lit("test/") + pl.col("unit").cast(pl.Utf8))
        truth = {f"test/{u}": t for u, t in zip(test_units, true, strict=True)}
        out = _run(fleet_stream(train, test, seed), settings)
        result = {"protocol": "official", **_score(out, truth, cap)}
    else:
        result = _cross_validate(train, cap, folds, settings, cuts, seed)
    result["seconds"] = time.perf_counter() - started
    result["settings"] = {k: v for k, v in vars(settings).items()}
    return result


def _cross_validate(
    train: pl.DataFrame,
    cap: float | None,
    folds: int,
    settings: LabelSettings,
    cuts: int,
    seed: int,
) -> dict:
    units = train["unit"].unique().sort().to_list()
    if folds < 2 or folds > len(units):
        raise ValueError(f"folds must be in 2..{len(units)}, got {folds}")
    shuffled = list(units)
    random.Random(seed).shuffle(shuffled)
    fold_results, predicted, true, lows, highs = [], [], [], [], []
    for k in range(folds):
        held = sorted(shuffled[k::folds])
        rest = train.filter(~pl.col("unit").is_in(held))
        cut, truth = truncate(train, held, cuts, seed + 1000 + k)
        out = _run(fleet_stream(rest, cut, seed + k), settings)
        scored = _score(out, truth, cap)
        fold_results.append({k2: v for k2, v in scored.items() if k2 not in ("predicted", "true")})
        predicted += scored["predicted"]
        true += scored["true"]
        last = (
            out.group_by("unit", maintain_order=True)
            .last()
            .filter(pl.col("unit").is_in(list(truth)))
        )
        lows += last["prediction_low"].to_list()
        highs += last["prediction_high"].to_list()
    result = {
        "protocol": f"{folds}-fold leave-engines-out cross-validation on train_FD001",
        "engines": len(units),
        "cuts": len(true),
        "rmse": rmse(predicted, true),
        "phm08_mean": phm08_score(predicted, true) / len(true),
        "folds": fold_results,
    }
    if cap is not None:
        capped = [min(t, cap) for t in true]
        result["rmse_capped"] = rmse(predicted, capped)
        near = [(p, t) for p, t in zip(predicted, true, strict=True) if t <= cap]
        if near:
            result["rmse_rul_within_cap"] = rmse([p for p, _ in near], [t for _, t in near])
    if all(v is not None for v in lows + highs):
        result["coverage"] = _coverage(lows, highs, true)
        if cap is not None:
            result["coverage_capped"] = _coverage(lows, highs, [min(t, cap) for t in true])
        result["mean_width"] = sum(h - lo for lo, h in zip(lows, highs, strict=True)) / len(lows)
    return result


def summary(result: dict) -> list[str]:
    """Lines for the terminal: the protocol, RMSE and PHM08 score, the interval's coverage."""
    lines = [f"C-MAPSS FD001, {result['protocol']}"]
    if result["protocol"] == "official":
        lines.append(
            f"  {result['engines']} test engines: RMSE {result['rmse']:.2f}, "
            f"PHM08 score {result['phm08']:.1f}"
        )
    else:
        lines.append(
            f"  {result['engines']} engines, {result['cuts']} cuts: RMSE {result['rmse']:.2f} "
            f"(true RUL), mean PHM08 score per cut {result['phm08_mean']:.2f}"
        )
        if "rmse_capped" in result:
            lines.append(
                f"  RMSE against the RUL capped at the target's cap: {result['rmse_capped']:.2f}"
            )
        if "rmse_rul_within_cap" in result:
            lines.append(
                "  RMSE on cuts whose true RUL is within the cap: "
                f"{result['rmse_rul_within_cap']:.2f}"
            )
    if "coverage" in result:
        lines.append(
            f"  interval coverage {result['coverage']:.2f} of the true RUL"
            + (
                f", {result['coverage_capped']:.2f} of the capped one"
                if "coverage_capped" in result
                else ""
            )
            + f" (mean width {result['mean_width']:.1f} cycles)"
        )
    lines.append(
        f"  published test RMSE: LR 21.7, RF 17.1, LSTM 16.1, DCNN 12.6 ({result['seconds']:.1f} s)"
    )
    return lines
