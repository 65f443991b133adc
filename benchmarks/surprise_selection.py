"""The written protocol behind the surprise model's defaults and ``eval nab``'s onset window.

    .venv/bin/python benchmarks/surprise_selection.py [--data ../shared/data/nab] [--folds 5]

Only NAB's development series (``../shared/data/nab``, 29 of 58) are read. Each candidate is the
replay's row mode with the ``surprise`` model as the score model (``models/surprise.py``) and
one setting of ``short`` x ``long_half_life`` x ``level_half_life``, and an onset window
(``BacktestSettings.onset``: the score only where it beats the K windows before it). The
candidates' scores are computed once per series; then, leave-series-out: the series are cut in
``--folds`` folds (every k-th by sorted name); for each fold and profile the candidate *and*
the corpus threshold are chosen on the other folds (NAB's sweep), and the held-out fold is
scored with them. The pooled held-out raw scores, normalised with the held-out null and perfect
scores, are the cross-validated figure. The candidate chosen on all series (the defaults) and
its in-sample figure close the log. Prints JSON.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import subprocess
import time
from pathlib import Path

import numpy as np
import polars as pl

from floorsight.evaluation import nab
from floorsight.pipelines.backtest import BacktestSettings, backtest, onset_only

SHORT = (1, 3, 5)
LONG_HALF_LIFE = (300.0, 1000.0, 3000.0)
LEVEL_HALF_LIFE = (30.0, 100.0)
ONSET = (0, 30, 100, 300)


def candidate_scores(data: Path, names: list[str], windows: dict) -> dict[tuple, list]:
    """Candidate -> the prepared rows of every series with that candidate's scores."""
    out: dict[tuple, list] = {}
    series = {n: nab.file_rows(data, n, windows[n]) for n in names}
    for short, long_hl, level_hl in itertools.product(SHORT, LONG_HALF_LIFE, LEVEL_HALF_LIFE):
        models = {
            "surprise": {"short": short, "long_half_life": long_hl, "level_half_life": level_hl}
        }
        settings = BacktestSettings(window=None, score_model="surprise", models=models)
        raw = {}
        for n, (frame, _) in series.items():
            got = backtest(frame.rename({"value": "v"}), "timestamp", settings=settings)
            raw[n] = got["anomaly_score"]
        for k in ONSET:
            rows = []
            for n, (_, prepared) in series.items():
                scores = raw[n] if k == 0 else pl.select(onset_only(pl.lit(raw[n]), k))
                scores = np.asarray(pl.Series(scores).to_numpy(), dtype=np.float64)
                rows.append(dataclasses.replace(prepared, anomaly_score=scores))
            out[(short, long_hl, level_hl, k)] = rows
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data/nab"))
    parser.add_argument("--folds", type=int, default=5)
    args = parser.parse_args()
    started = time.time()
    windows = nab.load_windows(args.data)
    profiles = nab.load_profiles(args.data / "profiles.json")
    names = sorted(windows)
    candidates = candidate_scores(args.data, names, windows)
    folds = [names[i :: args.folds] for i in range(args.folds)]
    log: dict = {
        "commit": subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], check=False, capture_output=True, text=True
        ).stdout.strip(),
        "series": len(names),
        "candidates": len(candidates),
        "folds": [],
    }
    pooled = {p: [0.0, 0.0, 0.0] for p in profiles}  # raw, null, perfect (held out)
    for held in folds:
        fold = {"held_out": held, "chosen": {}}
        for profile, cost in profiles.items():
            best = None
            for key, rows in candidates.items():
                train = [r for r in rows if r.name not in held]
                threshold, total = nab.best_threshold(train, cost)
                if best is None or total > best[0]:
                    best = (total, key, threshold)
            _, key, threshold = best
            test = [r for r in candidates[key] if r.name in held]
            raw = sum(nab.score_file(r, cost, threshold)["raw"] for r in test)
            null, perfect = nab.null_score(test, cost), nab.perfect_score(test, cost)
            for i, v in enumerate((raw, null, perfect)):
                pooled[profile][i] += v
            fold["chosen"][profile] = {
                "candidate": dict(zip(("short", "long_half_life", "level_half_life", "onset"),
                                      key, strict=True)),
                "threshold": threshold,
                "held_out_score": round(nab.normalised(raw, null, perfect), 2),
            }  # fmt: skip
        log["folds"].append(fold)
    log["cross_validated"] = {
        p: round(nab.normalised(*pooled[p]), 2) for p in profiles
    }  # fmt: skip
    # the defaults: the candidate best on all development series (standard profile)
    cost = profiles["standard"]
    key = max(candidates, key=lambda c: nab.best_threshold(candidates[c], cost)[1])
    log["chosen_on_all"] = dict(
        zip(("short", "long_half_life", "level_half_life", "onset"), key, strict=True)
    )
    log["in_sample"] = {
        p: round(v["score"], 2) for p, v in nab.score_corpus(candidates[key], profiles).items()
    }
    log["seconds"] = round(time.time() - started, 1)
    print(json.dumps(log))


if __name__ == "__main__":
    main()
