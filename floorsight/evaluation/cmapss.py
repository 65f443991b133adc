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

Everything runs through :func:`floorsight.pipelines.backtest.backtest` (what ``floorsight
replay`` runs): its ``prediction``, ``prediction_low`` and ``prediction_high`` at each test
engine's last row are scored.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import asdict, replace
from pathlib import Path

import polars as pl

from floorsight.models.fleet import LabelSettings

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
#: the label model's settings in ``floorsight eval cmapss`` (benchmarks/cmapss_selection.py
#: chose them by leave-engines-out cross-validation on train_FD001 only)
CMAPSS_SETTINGS = LabelSettings(cap=CAP, censored=True)


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


def _run(stream: pl.DataFrame, settings: LabelSettings) -> pl.DataFrame:
    from floorsight.pipelines.backtest import BacktestSettings, backtest

    return backtest(
        stream, "time", "unit", "rul", label_delay=0, settings=BacktestSettings(labels=settings)
    )


def _at_cuts(out: pl.DataFrame, truth: dict[str, float]) -> dict[str, list]:
    """Each test engine's last row: its prediction, interval and true RUL, in truth's order."""
    last = out.group_by("unit", maintain_order=True).last()
    rows = {
        r["unit"]: r for r in last.filter(pl.col("unit").is_in(list(truth))).iter_rows(named=True)
    }
    if missing := [n for n in truth if n not in rows]:
        raise ValueError(f"{len(missing)} test engines without a row in the output")
    names = list(truth)
    return {
        "predicted": [_or_zero(rows[n]["prediction"]) for n in names],
        "low": [rows[n]["prediction_low"] for n in names],
        "high": [rows[n]["prediction_high"] for n in names],
        "true": [truth[n] for n in names],
    }


def _or_zero(value: float | None) -> float:
    # a model that learned nothing predicts nothing: scored as 0 cycles left
    return 0.0 if value is None else value


def figures(cuts: dict[str, list], cap: float | None) -> dict:
    """RMSE and PHM08 score (total and per engine) of predictions at the cuts against the true
    RUL; RMSE against the RUL capped at ``cap``; the interval's coverage of both."""
    predicted, true = cuts["predicted"], cuts["true"]
    result = {
        "engines": len(true),
        "rmse": rmse(predicted, true),
        "phm08": phm08_score(predicted, true),
        "phm08_mean": phm08_score(predicted, true) / len(true),
    }
    capped = [min(t, cap) for t in true] if cap is not None else true
    if cap is not None:
        result["rmse_capped"] = rmse(predicted, capped)
    lows, highs = cuts["low"], cuts["high"]
    if all(v is not None for v in lows + highs):
        result["coverage"] = _coverage(lows, highs, true)
        if cap is not None:
            result["coverage_capped"] = _coverage(lows, highs, capped)
        result["mean_width"] = sum(h - lo for lo, h in zip(lows, highs, strict=True)) / len(lows)
    return result


def _coverage(lows: list[float], highs: list[float], true: list[float]) -> float:
    inside = sum(lo <= t <= hi for lo, hi, t in zip(lows, highs, true, strict=True))
    return inside / len(true)


def held_out(
    train: pl.DataFrame,
    held: list[int],
    settings: LabelSettings,
    cuts: int,
    seed: int,
) -> dict[str, list]:
    """One fold: the model learns every engine of ``train`` but ``held``, then predicts the
    ``held`` engines cut ``cuts`` times each; the predictions at the cuts and the truth."""
    rest = train.filter(~pl.col("unit").is_in(held))
    cut, truth = truncate(train, held, cuts, seed + 1000)
    return _at_cuts(_run(fleet_stream(rest, cut, seed), settings), truth)


def folds_of(units: list[int], folds: int, seed: int) -> list[list[int]]:
    """The engines split into ``folds`` groups at random (seeded)."""
    if folds < 2 or folds > len(units):
        raise ValueError(f"folds must be in 2..{len(units)}, got {folds}")
    shuffled = sorted(units)
    random.Random(seed).shuffle(shuffled)
    return [sorted(shuffled[k::folds]) for k in range(folds)]


def cross_validate(
    train: pl.DataFrame,
    settings: LabelSettings,
    folds: int = 5,
    cuts: int = 5,
    seed: int = 0,
) -> dict[str, list]:
    """Leave-engines-out K-fold: every engine of ``train`` held out once; all folds' cuts."""
    pooled: dict[str, list] = {"predicted": [], "low": [], "high": [], "true": []}
    units = train["unit"].unique().to_list()
    for k, held in enumerate(folds_of(units, folds, seed)):
        for key, values in held_out(train, held, settings, cuts, seed + k).items():
            pooled[key] += values
    return pooled


def evaluate(
    data: Path,
    cap: float | None = CAP,
    folds: int = 5,
    settings: LabelSettings | None = None,
    cuts: int = 5,
    seed: int = 0,
) -> dict:
    """The figures of ``floorsight eval cmapss`` on FD001 in ``data`` (see the module docstring).

    ``settings``: the label model's (None: :data:`CMAPSS_SETTINGS`), its ``cap`` replaced by
    ``cap``; ``cuts`` and ``seed``: the cross-validation's cuts per engine and its seed (folds,
    cuts and the fleet's start offsets).
    """
    data = Path(data)
    settings = replace(settings or CMAPSS_SETTINGS, cap=cap)
    train = with_rul(read_cmapss(data / "train_FD001.txt"))
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
        cut = _at_cuts(_run(fleet_stream(train, test, seed), settings), truth)
        result = {"protocol": "official", **figures(cut, cap)}
    else:
        cut = cross_validate(train, settings, folds, cuts, seed)
        result = {
            "protocol": f"{folds}-fold leave-engines-out cross-validation on train_FD001",
            "train_engines": train["unit"].n_unique(),
            "cuts_per_engine": cuts,
            **figures(cut, cap),
        }
    result["predicted"], result["true"] = cut["predicted"], cut["true"]
    result["seconds"] = time.perf_counter() - started
    result["settings"] = asdict(settings)
    return result


def summary(result: dict) -> list[str]:
    """Lines for the terminal: the protocol, RMSE and PHM08 score, the interval's coverage."""
    lines = [f"C-MAPSS FD001, {result['protocol']} ({result['seconds']:.1f} s)"]
    if result["protocol"] == "official":
        what = f"{result['engines']} test engines at their last cycle"
    else:
        what = (
            f"{result['train_engines']} engines x {result['cuts_per_engine']} random cuts"
            f" (true RUL 1..{MAX_RUL})"
        )
    lines.append(
        f"  {what}: RMSE {result['rmse']:.2f}, PHM08 score {result['phm08']:.1f}"
        f" ({result['phm08_mean']:.2f} per engine)"
    )
    if "rmse_capped" in result:
        lines.append(
            f"  RMSE against the true RUL capped at the target's cap: {result['rmse_capped']:.2f}"
        )
    if "coverage" in result:
        capped = result.get("coverage_capped")
        lines.append(
            f"  {result['settings']['coverage']:.0%} interval: covers"
            f" {result['coverage']:.1%} of the true RUL"
            + (f", {capped:.1%} of the capped one" if capped is not None else "")
            + f"; mean width {result['mean_width']:.1f} cycles"
        )
    lines.append("  published FD001 test RMSE: LR 21.7, RF 17.1, LSTM 16.1, DCNN 12.6")
    return lines
