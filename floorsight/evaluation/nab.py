"""``floorsight eval nab``: the Numenta Anomaly Benchmark, scored with NAB's own protocol.

The detector is what ``floorsight replay`` computes in row mode: each series (``timestamp,
value``, time stamps without zone read as UTC) goes through
``backtest(frame, "timestamp", settings=nab_settings())`` and its
``anomaly_score`` column is the detector's anomaly score, one per row.

The scorer re-implements NAB's (numenta/NAB, AGPL-3.0; read, not copied): ``nab/sweeper.py``
(``Sweeper.calcSweepScore``, ``Sweeper.calcScoreByThreshold``, ``scaledSigmoid``),
``nab/optimizer.py`` (``optimizeThreshold``: one sweep over the whole corpus),
``nab/scorer.py`` (``scoreCorpus``: each file at the chosen threshold),
``nab/util.py`` (``getProbationPeriod``, ``convertAnomalyScoresToDetections``: a detection is
a row whose score is at or above the threshold) and ``nab/runner.py`` (``normalize``):

- the first ``min(floor(0.15 * rows), 0.15 * 5000)`` rows of a file are probationary: they are
  never scored (NAB caps the period at 750 rows; the data's README leaves the cap out);
- a window's rows run from the first row at its start time stamp to the first row at its end
  time stamp (``timestamps.index``); row ``i`` of a window of ``width`` rows ending at ``right``
  is worth ``tpWeight * sigma(-(right - i + 1) / width) / sigma(-1)`` where
  ``sigma(x) = 2 / (1 + exp(5 x)) - 1`` (``-1`` past ``x > 3``), so a detection on the first
  row is worth ``tpWeight`` and one on the last about 0; only the best (the earliest) detection
  of a window counts, a window without one costs ``-fnWeight``;
- a detection outside every window costs ``fpWeight * sigma((i - right) / (width - 1))`` after
  a window (``right``, ``width``: the preceding window's), ``-fpWeight`` before any window;
- the threshold is shared by the corpus: every distinct score is tried (highest first, the
  first try detects nothing) and the one with the best total raw score wins (on a tie the
  highest threshold, as NAB's stable sort keeps it);
- normalised score: ``100 * (S - S_null) / (S_perfect - S_null)`` with ``S_null`` the score of
  NAB's null detector (0.5 on every row, its threshold swept the same way) and ``S_perfect`` the
  number of label windows times ``tpWeight``.

The sweep is vectorised: the rows of the whole corpus sorted once by score, each row's change
of the total raw score computed with cumulative sums and a cumulative maximum per window.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

if TYPE_CHECKING:
    from floorsight.pipelines.backtest import BacktestSettings

PROBATIONARY_PERCENT = 0.15
#: the null detector's score on every row (numenta/NAB nab/detectors/null)
NULL_SCORE = 0.5
#: the first threshold of NAB's sweep, above every score: nothing is detected
NO_DETECTION = 1.1
#: the series' one sensor, as the replay sees it
SENSOR = "nab_value"

#: NAB's published scoreboard (numenta/NAB README, v1.1, all 58 series), as the data's README
#: gives it: detector -> (standard, reward_low_FP_rate, reward_low_FN_rate)
PUBLISHED: dict[str, tuple[float, float, float]] = {
    "ARTime": (74.9, 65.1, 80.4),
    "Numenta HTM": (70.5, 62.6, 75.2),
    "CAD OSE": (69.9, 67.0, 73.2),
    "Skyline": (58.2, 46.2, 63.9),
    "KNN CAD": (58.0, 43.4, 64.8),
    "RCF": (51.7, 38.4, 59.7),
    "windowed Gaussian": (39.6, 20.9, 47.4),
}
PROFILE_ORDER = ("standard", "reward_low_FP_rate", "reward_low_FN_rate")


@dataclass(frozen=True)
class CostMatrix:
    """One NAB profile's weights (``profiles.json``'s ``CostMatrix``)."""

    tp_weight: float
    fp_weight: float
    fn_weight: float


@dataclass(frozen=True)
class ScoredRows:
    """One file's rows as NAB's sweep sees them, before the profile's weights.

    ``window`` is the row's window (0, 1, ... in the file; -1 outside every window);
    ``position_weight`` is ``sigma(position) / sigma(-1)`` in a window and ``sigma(distance)``
    (or -1 before any window) outside one; ``scored`` is False in the probationary period.
    """

    name: str
    anomaly_score: np.ndarray
    window: np.ndarray
    position_weight: np.ndarray
    scored: np.ndarray
    #: windows in the label file (S_perfect counts them all)
    label_windows: int

    @property
    def windows_scored(self) -> int:
        """Windows with at least one scored row: the ones a miss costs ``fnWeight``."""
        w = self.window[self.scored]
        return int(np.unique(w[w >= 0]).size)


def scaled_sigmoid(position: np.ndarray | float) -> np.ndarray:
    """NAB's ``scaledSigmoid``: 0.98661 at -1 (a window's left edge), 0 at 0 (its right edge),
    -0.98661 at 1, and -1 past 3."""
    x = np.asarray(position, dtype=np.float64)
    with np.errstate(over="ignore"):
        value = 2.0 / (1.0 + np.exp(5.0 * x)) - 1.0
    return np.where(x > 3.0, -1.0, value)


def probationary_length(rows: int, percent: float = PROBATIONARY_PERCENT) -> int:
    """NAB's ``getProbationPeriod``: rows ``0 .. length - 1`` of a file are not scored."""
    return int(min(math.floor(percent * rows), percent * 5000))


def load_profiles(path: Path) -> dict[str, CostMatrix]:
    """``profiles.json``: profile name -> its cost matrix."""
    raw = json.loads(path.read_text())
    return {
        name: CostMatrix(
            tp_weight=float(p["CostMatrix"]["tpWeight"]),
            fp_weight=float(p["CostMatrix"]["fpWeight"]),
            fn_weight=float(p["CostMatrix"]["fnWeight"]),
        )
        for name, p in raw.items()
    }


def _utc_microseconds(stamps: Iterable[str]) -> list[int]:
    """Label time stamps (no zone: UTC) as microseconds since the epoch."""
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    out = []
    for s in stamps:
        delta = datetime.fromisoformat(s).replace(tzinfo=UTC) - epoch
        out.append((delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds)
    return out


def prepare(
    name: str,
    timestamps: np.ndarray,
    anomaly_score: np.ndarray,
    windows: Sequence[tuple[int, int]] | np.ndarray,
    percent: float = PROBATIONARY_PERCENT,
) -> ScoredRows:
    """One file's rows for the sweep (NAB's ``Sweeper.calcSweepScore``).

    ``timestamps``: the rows' time stamps in file order (any sortable numbers, e.g. UTC
    microseconds); ``windows``: the label windows as (start, end) time stamps, in time order.
    """
    ts = np.asarray(timestamps)
    n = ts.size
    scores = np.asarray(anomaly_score, dtype=np.float64)
    if scores.size != n:
        raise ValueError(f"{name}: {scores.size} anomaly scores for {n} rows")
    limits = np.asarray(windows, dtype=ts.dtype).reshape(-1, 2)
    # the first row at each limit's time stamp, like NAB's `timestamps.index`
    left = np.searchsorted(ts, limits[:, 0], side="left")
    right = np.searchsorted(ts, limits[:, 1], side="left")
    for (a, b), i, j in zip(limits, left, right, strict=True):
        if i >= n or j >= n or ts[i] != a or ts[j] != b:
            raise ValueError(f"{name}: window {a}..{b} does not start and end on a row")
    width = (right - left + 1).astype(np.float64)

    i = np.arange(n)
    window = np.full(n, -1, dtype=np.int64)
    for k, (a, b) in enumerate(zip(left, right, strict=True)):
        window[a : b + 1] = k
    inside = window >= 0
    position_weight = np.empty(n, dtype=np.float64)
    k = window[inside]
    position_weight[inside] = scaled_sigmoid(
        -(right[k] - i[inside] + 1) / width[k]
    ) / scaled_sigmoid(-1.0)
    # outside: the last window whose right edge is before the row
    outside = ~inside
    prev = np.searchsorted(right, i[outside], side="left") - 1
    after = prev >= 0
    distance = np.full(prev.size, np.inf)
    with np.errstate(divide="ignore", invalid="ignore"):
        distance[after] = (i[outside][after] - right[prev[after]]) / (width[prev[after]] - 1.0)
    # a one-row window (no width to measure distance by) makes NAB divide by zero: far away
    distance = np.nan_to_num(distance, nan=np.inf, posinf=np.inf)
    position_weight[outside] = np.where(after, scaled_sigmoid(distance), -1.0)
    scored = i >= probationary_length(n, percent)
    return ScoredRows(name, scores, window, position_weight, scored, len(limits))


def _weighted(rows: ScoredRows, cost: CostMatrix) -> np.ndarray:
    return np.where(
        rows.window >= 0,
        rows.position_weight * cost.tp_weight,
        rows.position_weight * cost.fp_weight,
    )


def sweep(files: Sequence[ScoredRows], cost: CostMatrix) -> tuple[np.ndarray, np.ndarray]:
    """Every threshold NAB's sweep tries over ``files`` (highest first, the first detecting
    nothing) and the corpus's total raw score at each (``Sweeper.calcScoreByThreshold``)."""
    scores, window, weight = [], [], []
    offset = 0
    n_windows = 0
    for rows in files:
        keep = rows.scored
        w = rows.window[keep]
        scores.append(rows.anomaly_score[keep])
        window.append(np.where(w >= 0, w + offset, -1))
        weight.append(_weighted(rows, cost)[keep])
        offset += rows.label_windows
        n_windows += rows.windows_scored
    s = np.concatenate(scores) if scores else np.empty(0)
    g = np.concatenate(window) if window else np.empty(0, dtype=np.int64)
    v = np.concatenate(weight) if weight else np.empty(0)
    base = -cost.fn_weight * n_windows
    top = max(NO_DETECTION, float(np.nextafter(s.max(), np.inf))) if s.size else NO_DETECTION
    if s.size == 0:
        return np.array([top]), np.array([base])

    order = np.argsort(-s, kind="stable")
    s, g, v = s[order], g[order], v[order]
    delta = np.where(g < 0, v, 0.0)
    in_window = np.flatnonzero(g >= 0)
    if in_window.size:
        frame = pl.DataFrame({"g": g[in_window], "v": v[in_window]}).with_columns(
            best=pl.col("v").cum_max().over("g")
        )
        best = frame["best"].to_numpy()
        before = (
            frame.select(pl.col("best").shift(1).over("g").fill_null(-cost.fn_weight))
            .to_series()
            .to_numpy()
        )
        delta[in_window] = best - before
    total = base + np.cumsum(delta)
    # a threshold detects every row at or above it: the score after the last row of each tie
    last = np.flatnonzero(np.r_[s[1:] != s[:-1], True])
    return np.r_[top, s[last]], np.r_[base, total[last]]


def best_threshold(files: Sequence[ScoredRows], cost: CostMatrix) -> tuple[float, float]:
    """NAB's ``optimizeThreshold``: the threshold with the best total raw score over ``files``
    (the highest one on a tie) and that score."""
    thresholds, totals = sweep(files, cost)
    k = int(np.argmax(totals))
    return float(thresholds[k]), float(totals[k])


def score_file(rows: ScoredRows, cost: CostMatrix, threshold: float) -> dict[str, Any]:
    """One file's raw score at ``threshold`` (NAB's ``scoreDataSet``) and what makes it."""
    detected = rows.scored & (rows.anomaly_score >= threshold)
    weight = _weighted(rows, cost)
    fp = detected & (rows.window < 0)
    fp_score = float(weight[fp].sum())
    best = np.full(rows.label_windows, -np.inf)
    tp = detected & (rows.window >= 0)
    np.maximum.at(best, rows.window[tp], weight[tp])
    has_rows = np.zeros(rows.label_windows, dtype=bool)
    has_rows[rows.window[rows.scored & (rows.window >= 0)]] = True
    hit = np.isfinite(best) & has_rows
    window_score = float(best[hit].sum()) - cost.fn_weight * int((has_rows & ~hit).sum())
    return {
        "raw": window_score + fp_score,
        "windows": int(has_rows.sum()),
        "windows_detected": int(hit.sum()),
        "false_positives": int(fp.sum()),
        "false_positive_cost": fp_score,
    }


def null_score(files: Sequence[ScoredRows], cost: CostMatrix) -> float:
    """The raw score of NAB's null detector (0.5 everywhere) at its best threshold."""
    null = [
        dataclasses.replace(r, anomaly_score=np.full(r.anomaly_score.size, NULL_SCORE))
        for r in files
    ]
    return best_threshold(null, cost)[1]


def perfect_score(files: Sequence[ScoredRows], cost: CostMatrix) -> float:
    """NAB's perfect score: every label window detected on its first row."""
    return cost.tp_weight * sum(r.label_windows for r in files)


def normalised(raw: float, null: float, perfect: float) -> float:
    """``100 * (S - S_null) / (S_perfect - S_null)``: 0 the null detector, 100 perfect."""
    return 100.0 * (raw - null) / (perfect - null)


def score_corpus(
    files: Sequence[ScoredRows],
    profiles: dict[str, CostMatrix],
    thresholds: dict[str, float] | None = None,
) -> dict[str, dict[str, Any]]:
    """Per profile: the corpus's threshold (swept on ``files``, or the given one), raw total,
    null and perfect scores, normalised score and the raw score of each file."""
    out = {}
    for name, cost in profiles.items():
        if thresholds is None:
            threshold, _ = best_threshold(files, cost)
        else:
            threshold = thresholds[name]
        per_file = {r.name: score_file(r, cost, threshold) for r in files}
        raw = sum(f["raw"] for f in per_file.values())
        null, perfect = null_score(files, cost), perfect_score(files, cost)
        out[name] = {
            "score": normalised(raw, null, perfect),
            "threshold": threshold,
            "raw": raw,
            "null": null,
            "perfect": perfect,
            "files": per_file,
        }
    return out


def load_windows(data: Path) -> dict[str, list[tuple[str, str]]]:
    """``labels/combined_windows.json``: file name (``folder/file.csv``) -> its windows."""
    raw = json.loads((data / "labels" / "combined_windows.json").read_text())
    return {name: [(a, b) for a, b in windows] for name, windows in raw.items()}


def read_series(path: Path) -> pl.DataFrame:
    """One NAB series as a wide frame: ``timestamp`` (UTC) and ``value``, in file order."""
    frame = pl.read_csv(path, try_parse_dates=True)
    return frame.with_columns(
        pl.col("timestamp").dt.replace_time_zone("UTC"), pl.col("value").cast(pl.Float64)
    )


def nab_settings():
    """``eval nab``'s detector: the replay's row mode scored by the ``surprise`` model, its
    score reported at onsets (above the 100 rows before it): chosen on the 29 development
    series by leave-series-out cross-validation (``benchmarks/surprise_selection.py``)."""
    from floorsight.pipelines.backtest import BacktestSettings

    return BacktestSettings(window=None, score_model="surprise", onset=100)


def anomaly_scores(frame: pl.DataFrame, settings: BacktestSettings | None = None) -> np.ndarray:
    """The replay's row-mode ``anomaly_score`` for each row of ``frame`` (0 where it has none)."""
    from floorsight.pipelines.backtest import backtest

    # the sensor's name is the series' (backtest's long layout already has a `value` column)
    frame = frame.rename({"value": SENSOR})
    out = backtest(frame, "timestamp", settings=settings or nab_settings())
    if out.height != frame.height:
        raise ValueError(f"backtest returned {out.height} rows for {frame.height}")
    return out["anomaly_score"].fill_null(0.0).fill_nan(0.0).to_numpy().astype(np.float64)


def file_rows(
    data: Path, name: str, windows: Sequence[tuple[str, str]], scores: np.ndarray | None = None
) -> tuple[pl.DataFrame, ScoredRows]:
    """One series read and prepared for the sweep (its scores 0 until ``scores`` are given)."""
    frame = read_series(data / "data" / name)
    ts = frame["timestamp"].dt.epoch("us").to_numpy()
    limits = np.array([_utc_microseconds(w) for w in windows], dtype=np.int64).reshape(-1, 2)
    if scores is None:
        scores = np.zeros(frame.height)
    return frame, prepare(name, ts, scores, limits)


def _settings_json(settings: object) -> object:
    if settings is None:
        return None
    if dataclasses.is_dataclass(settings) and not isinstance(settings, type):
        return json.loads(json.dumps(dataclasses.asdict(settings), default=str))
    return repr(settings)


def evaluate(
    data: Path, settings: BacktestSettings | None = None, files: Iterable[str] | None = None
) -> dict[str, Any]:
    """NAB's protocol over the series in ``data`` (all of the label file's, or ``files``),
    the detector the replay's row mode with ``settings``; a JSON-able result."""
    data = Path(data)
    windows = load_windows(data)
    names = sorted(windows) if files is None else list(files)
    unknown = [n for n in names if n not in windows]
    if unknown:
        raise ValueError(f"not in {data}/labels/combined_windows.json: {', '.join(unknown)}")
    prepared = []
    for name in names:
        frame, rows = file_rows(data, name, windows[name])
        prepared.append(dataclasses.replace(rows, anomaly_score=anomaly_scores(frame, settings)))
    profiles = load_profiles(data / "profiles.json")
    return {
        "benchmark": "NAB",
        "data": str(data),
        "files": len(prepared),
        "rows": int(sum(r.anomaly_score.size for r in prepared)),
        "windows": int(sum(r.label_windows for r in prepared)),
        "probationary_percent": PROBATIONARY_PERCENT,
        "settings": _settings_json(settings),
        "profiles": score_corpus(prepared, profiles),
        "leaderboard": {
            "series": 58,
            "source": "numenta/NAB README (v1.1), as data/nab/README.md gives it",
            "profiles": list(PROFILE_ORDER),
            "detectors": {
                k: dict(zip(PROFILE_ORDER, v, strict=True)) for k, v in PUBLISHED.items()
            },
        },
    }


def _threshold_text(threshold: float) -> str:
    """A threshold as printed: ``1 - 4.51e-08`` near the top, where the scores' evidence is."""
    if 0.999 < threshold < 1.0:
        return f"1 - {1.0 - threshold:.3g}"
    return f"{threshold:.6g}"


def summary(result: dict[str, Any]) -> list[str]:
    """A few lines for the terminal."""
    profiles = result["profiles"]
    lines = [
        f"NAB, {result['files']} series, {result['rows']} rows, {result['windows']} windows "
        "(NAB's scorer; normalised: 0 = null detector, 100 = perfect)"
    ]
    for name in [p for p in PROFILE_ORDER if p in profiles] + [
        p for p in profiles if p not in PROFILE_ORDER
    ]:
        p = profiles[name]
        detected = sum(f["windows_detected"] for f in p["files"].values())
        fps = sum(f["false_positives"] for f in p["files"].values())
        lines.append(
            f"  {name:<20} {p['score']:6.1f}  threshold {_threshold_text(p['threshold'])}  "
            f"windows detected {detected}/{result['windows']}  false positive rows {fps}"
        )
    board = "; ".join(f"{k} {' / '.join(f'{x:.1f}' for x in v)}" for k, v in PUBLISHED.items())
    lines.append(f"published (all 58 series, standard / low FP / low FN): {board}")
    return lines
