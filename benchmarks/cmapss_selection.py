"""How the C-MAPSS label model settings were chosen: leave-engines-out CV on train_FD001 only.

    .venv/bin/python benchmarks/cmapss_selection.py [--data ../shared/data/cmapss] [--nested]

The official FD001 test engines are not in the development data; nothing here reads them.
Every figure is ``floorsight eval cmapss``'s code (through the pipeline's backtest): the model
learns the training engines' whole lives online (label_delay 0: past history), then predicts
held-out engines cut at random cycles (true RUL 1..150, at least 31 cycles kept, 5 cuts each)
with empty labels; the RMSE at the cuts is against the true, uncapped RUL. The cap is 125.

1. **selection**: every candidate on 5-fold CV (seed 0); the lowest RMSE is chosen;
2. **interval**: the chosen model with one error quantile for all predictions or one per
   bin of the prediction (Mondrian); the one whose coverage is nearer 90 % is chosen;
3. **report**: the chosen settings on a fresh 5-fold CV (seed 1: other folds, cuts, fleet
   order). The same engines chose them, so this figure is still optimistic;
4. with ``--nested``: nested CV (seed 2): for each of 5 outer folds the candidate is chosen
   on a 4-fold CV of the other 80 engines only, then scored on the outer fold's engines;
   the pooled outer figures estimate what the whole selection procedure generalises to.

Also the speed: the whole of train_FD001 (20,631 rows, 100 engines) through the backtest
with the chosen settings, and each label model's time per row on the first 2,000 rows.
Prints one JSON document.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import polars as pl

from floorsight.evaluation import cmapss
from floorsight.models.fleet import MODELS, FleetLabels, LabelSettings

#: the candidates spell out what they were chosen from (raw values, five interval bins), so a
#: change of ``LabelSettings``' defaults (now this selection's choice) does not move them
BASE = LabelSettings(cap=cmapss.CAP, model="bayes", censored=True, raw=True, interval_bins=5)
#: (what was tried, settings)
CANDIDATES = [
    (
        "linear SGD (lr 3e-4), EW means 5/20 rows + raw + trend",
        replace(BASE, model="linear", learning_rate=0.0003, censored=False),
    ),
    ("exact least squares (bayes), same features", replace(BASE, censored=False)),
    ("bayes, labels at the cap censored", BASE),
    ("bayes censored, EW means 10/40", replace(BASE, half_lives=(10.0, 40.0))),
    ("bayes censored, EW means 5/20/60", replace(BASE, half_lives=(5.0, 20.0, 60.0))),
    ("bayes censored, EW means 2/10/40", replace(BASE, half_lives=(2.0, 10.0, 40.0))),
    ("bayes censored, no raw values", replace(BASE, raw=False)),
]
FOLDS, CUTS = 5, 5


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _cv(train: pl.DataFrame, settings: LabelSettings, seed: int, folds: int = FOLDS) -> dict:
    return cmapss.figures(cmapss.cross_validate(train, settings, folds, CUTS, seed), cmapss.CAP)


def _rounded(figures: dict) -> dict:
    return {k: round(v, 3) if isinstance(v, float) else v for k, v in figures.items()}


def nested(train: pl.DataFrame, seed: int) -> dict:
    """Outer folds scored with the candidate chosen on inner folds of the other engines."""
    pooled: dict[str, list] = {"predicted": [], "low": [], "high": [], "true": []}
    chosen = []
    units = train["unit"].unique().to_list()
    for k, held in enumerate(cmapss.folds_of(units, FOLDS, seed)):
        inner = train.filter(~pl.col("unit").is_in(held))
        scores = {
            name: _cv(inner, settings, seed + 100 + k, folds=FOLDS - 1)["rmse"]
            for name, settings in CANDIDATES
        }
        best = min(scores, key=scores.__getitem__)
        chosen.append({"outer_fold": k, "chosen": best, "inner_rmse": round(scores[best], 3)})
        _log(f"nested fold {k}: {best} (inner RMSE {scores[best]:.2f})")
        settings = dict(CANDIDATES)[best]
        for key, values in cmapss.held_out(train, held, settings, CUTS, seed + k).items():
            pooled[key] += values
    return {"choices": chosen, **_rounded(cmapss.figures(pooled, cmapss.CAP))}


def speed(train: pl.DataFrame, settings: LabelSettings) -> dict:
    stream = cmapss.fleet_stream(train, train.head(0), 0)
    started = time.perf_counter()
    cmapss._run(stream, settings)
    whole = time.perf_counter() - started
    sensors = [*cmapss.SETTINGS, *cmapss.SENSORS]
    rows = stream.head(2000)
    per_row = {}
    for model in MODELS:
        fleet = FleetLabels(sensors, False, 0, replace(settings, model=model))
        started = time.perf_counter()
        for unit, label, *values in rows.select("unit", "rul", *sensors).iter_rows():
            fleet.step(unit, dict(zip(sensors, values, strict=True)), label)
        per_row[model] = round((time.perf_counter() - started) / rows.height * 1000, 3)
    return {
        "train_FD001_rows": stream.height,
        "backtest_seconds": round(whole, 2),
        "ms_per_row_first_2000_rows": per_row,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path("../shared/data/cmapss"))
    ap.add_argument("--nested", action="store_true", help="also the nested CV (slow)")
    args = ap.parse_args()
    train = cmapss.with_rul(cmapss.read_cmapss(args.data / "train_FD001.txt"))
    out: dict = {"protocol": __doc__.split("\n\n")[2], "candidates": []}
    for name, settings in CANDIDATES:
        figures = _rounded(_cv(train, settings, seed=0))
        _log(f"{name}: RMSE {figures['rmse']}")
        out["candidates"].append({"name": name, "settings": asdict(settings), **figures})
    best = min(out["candidates"], key=lambda c: c["rmse"])
    chosen = dict(CANDIDATES)[best["name"]]
    bins = {}
    for n in (1, 5):
        settings = replace(chosen, interval_bins=n)
        bins[n] = best if n == chosen.interval_bins else _rounded(_cv(train, settings, seed=0))
    nearest = min(bins, key=lambda n: abs(bins[n]["coverage"] - chosen.coverage))
    chosen = replace(chosen, interval_bins=nearest)
    out["interval_bins"] = {
        str(n): {k: f[k] for k in ("coverage", "coverage_capped", "mean_width")}
        for n, f in bins.items()
    }
    out["chosen"] = {"name": best["name"], "settings": asdict(chosen)}
    out["report_cv_seed_1"] = _rounded(_cv(train, chosen, seed=1))
    _log(f"chosen: {best['name']}, bins {nearest}; fresh CV {out['report_cv_seed_1']}")
    if args.nested:
        out["nested_cv_seed_2"] = nested(train, seed=2)
    out["speed"] = speed(train, chosen)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
