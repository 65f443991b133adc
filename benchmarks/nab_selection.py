"""How the row-mode detector settings for NAB are chosen: leave-series-out cross-validation.

    .venv/bin/python benchmarks/nab_selection.py [--data ../shared/data/nab] [--folds 5]

Only the development data (the 29 of NAB's 58 series in ``data/nab``) is read. The protocol,
written before any figure was seen:

1. Candidates: a small grid of the anomaly model's settings (``BacktestSettings.models
   ["anomaly"]``: ``half_life``, ``learn_below``, ``grace_period``), the replay's row mode
   (``BacktestSettings(window=None)``), the current defaults first. Each candidate's
   ``anomaly_score`` is computed once per series (the replay's scores do not depend on the
   threshold).
2. Folds: the series sorted by ``folder/file`` name, series ``i`` in fold ``i % folds``.
3. For each fold and each NAB profile: on the other folds, every candidate's threshold is swept
   as NAB does (one threshold for those series) and the candidate with the best normalised
   score is chosen (ties: the earlier in the grid); the held-out fold's series are then scored
   with that candidate's scores at that threshold.
4. Reported per profile: the pooled held-out score (every series scored once, by a fold that
   never saw it; the raw scores summed and normalised with the null and perfect scores of all
   the series) and each fold's choice.
5. The settings proposed as row-mode defaults: the same selection run on all the series (the
   standard profile's choice); its in-sample score is printed next to the held-out ones, as a
   figure tuned on the data it is reported on.

Prints the log as JSON.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from floorsight.evaluation import nab
from floorsight.pipelines.backtest import BacktestSettings

HALF_LIVES = (360.0, 60.0, 2000.0)
LEARN_BELOW = (0.99, 0.9, 0.999)
GRACE_PERIODS = (30, 200)


def candidates() -> list[dict[str, Any]]:
    """The anomaly model's settings tried, the defaults (half-life 360, 0.99, 30) first."""
    return [
        {"half_life": h, "learn_below": lb, "grace_period": g}
        for h, lb, g in itertools.product(HALF_LIVES, LEARN_BELOW, GRACE_PERIODS)
    ]


def settings_of(candidate: dict[str, Any]) -> BacktestSettings:
    return BacktestSettings(window=None, models={"anomaly": candidate})


def choose(
    rows: dict[int, list[nab.ScoredRows]], names: list[str], cost: nab.CostMatrix
) -> tuple[int, float, float]:
    """The candidate with the best normalised score on the series ``names`` (threshold swept on
    them): (candidate index, threshold, normalised score)."""
    best = (-1, 0.0, -np.inf)
    for k, files in rows.items():
        subset = [r for r in files if r.name in names]
        threshold, raw = nab.best_threshold(subset, cost)
        score = nab.normalised(raw, nab.null_score(subset, cost), nab.perfect_score(subset, cost))
        if score > best[2]:
            best = (k, threshold, score)
    return best


def provenance() -> dict[str, Any]:
    """The commit the figures ran on and the code files changed in the working tree."""

    def git(*args: str) -> str:
        run = subprocess.run(["git", *args], capture_output=True, text=True, check=False)
        return run.stdout.strip()

    changed = git("status", "--short", "--", "*.py").splitlines()
    return {"commit": git("rev-parse", "HEAD"), "uncommitted": [c.strip() for c in changed]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data/nab"))
    parser.add_argument("--folds", type=int, default=5)
    args = parser.parse_args()

    windows = nab.load_windows(args.data)
    profiles = nab.load_profiles(args.data / "profiles.json")
    names = sorted(windows)
    frames, base = {}, {}
    for name in names:
        frames[name], base[name] = nab.file_rows(args.data, name, windows[name])

    grid = candidates()
    rows: dict[int, list[nab.ScoredRows]] = {}
    seconds = []
    for k, candidate in enumerate(grid):
        t0 = time.perf_counter()
        settings = settings_of(candidate)
        rows[k] = [
            dataclasses.replace(base[n], anomaly_score=nab.anomaly_scores(frames[n], settings))
            for n in names
        ]
        seconds.append(round(time.perf_counter() - t0, 1))
        print(f"candidate {k + 1}/{len(grid)} {candidate}: {seconds[-1]} s", file=sys.stderr)

    fold_of = {n: i % args.folds for i, n in enumerate(names)}
    log: dict[str, Any] = {
        "benchmark": "NAB development series (29 of 58), leave-series-out cross-validation",
        "data": str(args.data),
        "code": provenance(),
        "series": len(names),
        "rows": int(sum(r.anomaly_score.size for r in rows[0])),
        "folds": {str(f): [n for n in names if fold_of[n] == f] for f in range(args.folds)},
        "grid": grid,
        "seconds_per_pass": seconds,
        "in_sample_per_candidate": [],
        "profiles": {},
    }
    for k, candidate in enumerate(grid):
        scored = nab.score_corpus(rows[k], profiles)
        log["in_sample_per_candidate"].append(
            {
                "candidate": candidate,
                **{p: round(v["score"], 2) for p, v in scored.items()},
                "thresholds": {p: v["threshold"] for p, v in scored.items()},
            }
        )

    for profile, cost in profiles.items():
        held_out_raw, folds = 0.0, []
        for f in range(args.folds):
            train = [n for n in names if fold_of[n] != f]
            test = [n for n in names if fold_of[n] == f]
            k, threshold, train_score = choose(rows, train, cost)
            test_rows = [r for r in rows[k] if r.name in test]
            raw = sum(nab.score_file(r, cost, threshold)["raw"] for r in test_rows)
            held_out_raw += raw
            folds.append(
                {
                    "fold": f,
                    "chosen": grid[k],
                    "threshold": threshold,
                    "train_score": round(train_score, 2),
                    "held_out_score": round(
                        nab.normalised(
                            raw,
                            nab.null_score(test_rows, cost),
                            nab.perfect_score(test_rows, cost),
                        ),
                        2,
                    ),
                }
            )
        null, perfect = nab.null_score(rows[0], cost), nab.perfect_score(rows[0], cost)
        k, threshold, in_sample = choose(rows, names, cost)
        log["profiles"][profile] = {
            "held_out_pooled": round(nab.normalised(held_out_raw, null, perfect), 2),
            "held_out_raw": held_out_raw,
            "null": null,
            "perfect": perfect,
            "folds": folds,
            "chosen_on_all_series": grid[k],
            "threshold_on_all_series": threshold,
            "in_sample": round(in_sample, 2),
        }
    log["proposed_defaults"] = log["profiles"]["standard"]["chosen_on_all_series"]
    print(json.dumps(log, indent=1))


if __name__ == "__main__":
    main()
