"""``floorsight eval skab``: the Skoltech Anomaly Benchmark, scored with SKAB's own protocol.

The detector is what ``floorsight replay`` computes: each experiment file (its sensor columns,
without the labels) goes through
``backtest(frame, "datetime", settings=SKAB_SETTINGS)`` (the pipeline's engine: window
features, every registry model, the alert rules). Outliers are the score model's flag
(``is_anomaly``) or, with ``prediction="alert"``, the rows where the score model's alert is open
(the alert rule's hysteresis on the same flags); changepoints are the ``changepoint`` column
(where that alert opens or clears).

The protocol is the benchmark's description (``../shared/data/skab/README.md``) and its
published metric code (SKAB ``core/metrics.py``, re-implemented here, not copied):

- every file on its own, the engine runs online from its first row; the first ``fit_rows``
  (400) rows are for fitting only and are not scored;
- outlier detection: TP, FP, TN, FN of the prediction against the ``anomaly`` column, pooled
  over the scored rows of all files; F1 = TP / (TP + (FP + FN) / 2), FAR = FP / (FP + TN)
  · 100, MAR = FN / (FN + TP) · 100;
- changepoint detection: a window of 60 s to the right of each true changepoint (a window that
  runs into the next one is cut at the next one's start); the first detection inside a window
  scores ``A_tp`` at the window's start falling to ``A_fp`` at its end along a scaled tanh;
  other detections inside a window count nothing; every detection outside the windows scores
  ``A_fp``; a window without detection scores ``A_fn``. Summed over files and normalised:
  100 · (S − S_null) / (S_perfect − S_null), with S_null = windows · A_fn and S_perfect =
  windows · A_tp. Profiles: standard (1, −0.11, −1), low FP (1, −0.22, −1), low FN (1, −0.11, −2).

:data:`SKAB_SETTINGS` (with :data:`SKAB_PREDICTION`) was chosen by the written protocol of
``benchmarks/skab_selection.py``: among window lengths, score models (anomaly, Hotelling T² on
all sensors, failure_risk) and their settings, the best pooled F1 on valve1 with a false-alarm
rate of at most 15 % there and on the anomaly-free recording; leave-files-out cross-validation
(4 folds of 4 files) gives the figure reported (docs/accuracy-skab.md). It is the pipeline's
own anomaly model on the pipeline's 10 s windows (every sensor's window mean and spread, none
picked by hand) with a threshold of 0.99, the outliers read from its alert (open after 2
flagged windows, cleared after 3 normal ones).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl

from floorsight.pipelines.backtest import BacktestSettings, backtest

PROFILES = {
    "standard": (1.0, -0.11, -1.0),
    "low_fp": (1.0, -0.22, -1.0),
    "low_fn": (1.0, -0.11, -2.0),
}
#: the label columns of a SKAB file (everything else but ``datetime`` is a sensor)
LABELS = ("anomaly", "changepoint")
#: rows at the start of each file for fitting only (SKAB's protocol)
FIT_ROWS = 400
PREDICTIONS = ("is_anomaly", "alert")
#: chosen by benchmarks/skab_selection.py (leave-files-out CV on valve1; docs/accuracy-skab.md):
#: valve1 cross-validated F1 0.858, FAR 13.43 %, MAR 16.18 %
SKAB_SETTINGS = BacktestSettings(
    window=timedelta(seconds=10),
    models={"anomaly": {"threshold": 0.99, "grace_period": 30}},
    score_model="anomaly",
)
#: how the outliers are read from the backtest with SKAB_SETTINGS (chosen with it)
SKAB_PREDICTION = "alert"
#: the leaderboard of the SKAB README (whole benchmark, 34 experiments): F1, FAR %, MAR %
LEADERBOARD_OUTLIERS = {
    "Conv-AE": (0.78, 13.55, 28.02),
    "MSET": (0.78, 39.73, 14.13),
    "T-squared+Q (PCA)": (0.76, 26.62, 24.92),
    "LSTM-AE": (0.74, 29.96, 25.92),
    "T-squared": (0.66, 19.21, 42.6),
    "Isolation forest": (0.29, 2.56, 82.89),
}
#: NAB standard / low FP / low FN
LEADERBOARD_CHANGEPOINTS = {
    "MSCRED": (32.42, 16.53, 40.28),
    "Isolation forest": (26.16, 19.5, 30.82),
    "T-squared+Q (PCA)": (25.35, 14.51, 31.33),
    "Conv-AE": (23.61, 21.54, 27.55),
    "LSTM-AE": (23.51, 20.11, 25.91),
    "T-squared": (19.54, 10.2, 24.31),
    "MSET": (13.84, 10.22, 17.37),
}


@dataclass
class Confusion:
    tp: int = 0
    fp: int = 0
    tn: int = 0
    fn: int = 0

    def add(self, true: list[int], pred: list[int]) -> None:
        for t, p in zip(true, pred, strict=True):
            if t and p:
                self.tp += 1
            elif p:
                self.fp += 1
            elif t:
                self.fn += 1
            else:
                self.tn += 1

    def __iadd__(self, other: Confusion) -> Confusion:
        self.tp += other.tp
        self.fp += other.fp
        self.tn += other.tn
        self.fn += other.fn
        return self

    @property
    def f1(self) -> float:
        den = self.tp + (self.fp + self.fn) / 2
        return self.tp / den if den else 0.0

    @property
    def far(self) -> float:
        return 100 * self.fp / (self.fp + self.tn) if self.fp + self.tn else 0.0

    @property
    def mar(self) -> float:
        return 100 * self.fn / (self.fn + self.tp) if self.fn + self.tp else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "f1": round(self.f1, 4),
            "far": round(self.far, 2),
            "mar": round(self.mar, 2),
            "tp": self.tp,
            "fp": self.fp,
            "tn": self.tn,
            "fn": self.fn,
        }


def _tanh_scale(position: float, a_tp: float, a_fp: float) -> float:
    """Score of the first detection at relative ``position`` (0 start .. 1 end) of a window."""
    steps = 1000
    event = min(int(position * steps), steps - 1)
    x = -math.pi / 2 + math.pi * event / (steps - 1)
    half = (a_tp - a_fp) / 2
    return half * -math.tanh(x) / math.tanh(math.pi / 2) + half + a_fp


@dataclass
class NabTally:
    """NAB sums over files, per profile: score, null score, perfect score."""

    sums: dict[str, list[float]] = field(
        default_factory=lambda: {p: [0.0, 0.0, 0.0] for p in PROFILES}
    )

    def add(
        self,
        changepoints: list[datetime],
        detections: list[datetime],
        window: timedelta = timedelta(seconds=60),
    ) -> None:
        cps = sorted(changepoints)
        bounds = [[c, c + window] for c in cps]
        for i in range(len(bounds) - 1):  # cut a window that runs into the next one
            bounds[i][1] = min(bounds[i][1], bounds[i + 1][0])
        first: dict[int, datetime] = {}
        fps = 0
        for t in sorted(detections):
            inside = next((i for i, (a, b) in enumerate(bounds) if a <= t <= b), None)
            if inside is None:
                fps += 1
            elif inside not in first:
                first[inside] = t
        for profile, (a_tp, a_fp, a_fn) in PROFILES.items():
            s = a_fp * fps + a_fn * (len(bounds) - len(first))
            for i, t in first.items():
                a, b = bounds[i]
                pos = (t - a) / (b - a) if b > a else 0.0
                s += _tanh_scale(pos, a_tp, a_fp)
            acc = self.sums[profile]
            acc[0] += s
            acc[1] += len(bounds) * a_fn
            acc[2] += len(bounds) * a_tp

    def __iadd__(self, other: NabTally) -> NabTally:
        for profile, acc in self.sums.items():
            for i, v in enumerate(other.sums[profile]):
                acc[i] += v
        return self

    def scores(self) -> dict[str, float]:
        out = {}
        for profile, (s, null, perfect) in self.sums.items():
            out[profile] = 100 * (s - null) / (perfect - null) if perfect != null else 0.0
        return out


@dataclass
class FileScore:
    """One file's share of the pooled metrics (they add up over files)."""

    file: str
    outliers: Confusion
    changepoints: NabTally
    #: changepoints the engine reported in the scored rows
    detections: int = 0


def read_skab(path: Path) -> pl.DataFrame:
    """A SKAB file (``;``-separated), its ``datetime`` parsed, its rows in time order (equal
    times keep the file's order; the labels move with their rows)."""
    frame = pl.read_csv(path, separator=";")
    try:
        stamps = frame["datetime"].str.to_datetime("%Y-%m-%d %H:%M:%S")
    except pl.exceptions.InvalidOperationError:
        stamps = frame["datetime"].str.to_datetime()
    return frame.with_columns(stamps).sort("datetime", maintain_order=True)


def parse_stems(spec: str | None) -> tuple[str, ...] | None:
    """File stems from ``"8-15"``, ``"0,3,5"`` or ``"0-3,9"``; None or ``""`` means all.

    >>> parse_stems("8-11,14")
    ('8', '9', '10', '11', '14')
    """
    if not spec:
        return None
    stems: list[str] = []
    for part in spec.split(","):
        first, _, last = part.strip().partition("-")
        if last:
            if not (first.isdigit() and last.isdigit()) or int(first) > int(last):
                raise ValueError(f"bad file range {part!r} (e.g. 8-15)")
            stems += [str(i) for i in range(int(first), int(last) + 1)]
        elif first:
            stems.append(first)
    return tuple(stems)


def labelled_subsets(data: Path) -> tuple[str, ...]:
    """The subfolders of ``data`` whose CSV files carry SKAB's labels, in name order
    (``anomaly-free`` has none and is left out)."""
    found = []
    for folder in sorted(p for p in Path(data).iterdir() if p.is_dir()):
        first = next(iter(sorted(folder.glob("*.csv"))), None)
        if first is None:
            continue
        with first.open() as f:
            header = f.readline().strip().split(";")
        if all(label in header for label in LABELS):
            found.append(folder.name)
    return tuple(found)


def skab_files(
    data: Path, subsets: Iterable[str] | None = None, stems: tuple[str, ...] | None = None
) -> list[Path]:
    """The experiments of ``subsets`` (None: every labelled subfolder) in numeric order,
    only those named in ``stems`` if given."""
    data = Path(data)
    if subsets is None:
        if not data.is_dir():
            raise FileNotFoundError(f"no SKAB data folder {data}")
        subsets = labelled_subsets(data)
    subsets = tuple(subsets)
    files = []
    for subset in subsets:
        folder = data / subset
        found = sorted(folder.glob("*.csv"), key=lambda p: (len(p.stem), p.stem))
        if stems is not None:
            if missing := sorted(set(stems) - {p.stem for p in found}):
                raise FileNotFoundError(f"no SKAB file {subset}/{{{','.join(missing)}}}.csv")
            found = [p for p in found if p.stem in stems]
        files += found
    if not files:
        raise FileNotFoundError(f"no SKAB files under {data} ({', '.join(subsets) or 'none'})")
    return files


def _defaults(
    settings: BacktestSettings | None, prediction: str | None
) -> tuple[BacktestSettings, str]:
    """``settings`` None: :data:`SKAB_SETTINGS` read with :data:`SKAB_PREDICTION`; other
    settings are read with ``is_anomaly`` unless ``prediction`` says otherwise."""
    if settings is None:
        return SKAB_SETTINGS, prediction or SKAB_PREDICTION
    return settings, prediction or "is_anomaly"


def detect(
    frame: pl.DataFrame, settings: BacktestSettings | None = None, prediction: str | None = None
) -> pl.DataFrame:
    """The engine over one SKAB frame (labels dropped): ``datetime``, ``outlier`` and
    ``changepoint_pred`` (Int8), one row per input row in the input's order (SKAB files are
    in time order; a frame that is not is refused, so rows and labels stay aligned)."""
    settings, prediction = _defaults(settings, prediction)
    if prediction not in PREDICTIONS:
        raise ValueError(f"prediction must be one of {', '.join(PREDICTIONS)}, not {prediction!r}")
    if not frame["datetime"].is_sorted():
        raise ValueError("the SKAB frame is not in time order")
    out = backtest(frame.drop(*LABELS, strict=False), "datetime", settings=settings)
    if prediction == "alert":
        causes = out["alert"].str.split(";")
        outlier = causes.list.contains(settings.score_model)
    else:
        outlier = out["is_anomaly"] == 1
    return pl.DataFrame(
        {
            "datetime": out["datetime"],
            "outlier": outlier.cast(pl.Int8),
            "changepoint_pred": out["changepoint"].cast(pl.Int8),
        }
    )


def score_file(
    frame: pl.DataFrame, detected: pl.DataFrame, fit_rows: int = FIT_ROWS, name: str = ""
) -> FileScore:
    """SKAB's metrics of one file's detections (its rows after the first ``fit_rows``)."""
    scored = frame.with_columns(
        outlier=detected["outlier"], changepoint_pred=detected["changepoint_pred"]
    ).slice(fit_rows)
    outliers = Confusion()
    outliers.add(scored["anomaly"].cast(pl.Int8).to_list(), scored["outlier"].to_list())
    nab = NabTally()
    predicted = scored.filter(pl.col("changepoint_pred") == 1)["datetime"].to_list()
    nab.add(scored.filter(pl.col("changepoint") == 1)["datetime"].to_list(), predicted)
    return FileScore(name, outliers, nab, len(predicted))


def run_file(
    path: Path,
    settings: BacktestSettings | None = None,
    fit_rows: int = FIT_ROWS,
    prediction: str | None = None,
) -> FileScore:
    frame = read_skab(path)
    return score_file(
        frame, detect(frame, settings, prediction), fit_rows, f"{path.parent.name}/{path.name}"
    )


def pooled(scores: Iterable[FileScore]) -> dict[str, Any]:
    """The pooled metrics of several files' scores (SKAB's protocol)."""
    outliers, nab = Confusion(), NabTally()
    for s in scores:
        outliers += s.outliers
        nab += s.changepoints
    return {
        "outliers": outliers.as_dict(),
        "changepoints_nab": {k: round(v, 2) for k, v in nab.scores().items()},
    }


def evaluate(
    files: list[Path],
    settings: BacktestSettings | None = None,
    fit_rows: int = FIT_ROWS,
    prediction: str | None = None,
) -> dict:
    """The engine over each file and SKAB's protocol over the results (a JSON-able dict).

    ``settings`` None: :data:`SKAB_SETTINGS` read with :data:`SKAB_PREDICTION`; other
    settings are read with ``is_anomaly`` unless ``prediction`` (``"alert"``) says otherwise.
    """
    settings, prediction = _defaults(settings, prediction)
    started = time.perf_counter()
    scores = [run_file(Path(p), settings, fit_rows, prediction) for p in files]
    per_file = [
        {
            "file": s.file,
            "f1": round(s.outliers.f1, 4),
            "far": round(s.outliers.far, 2),
            "mar": round(s.outliers.mar, 2),
            "changepoints": s.detections,
        }
        for s in scores
    ]
    return {
        "benchmark": "SKAB",
        "files": [str(p) for p in files],
        "fit_rows": fit_rows,
        "prediction": prediction,
        "settings": settings_json(settings),
        **pooled(scores),
        "per_file": per_file,
        "seconds": round(time.perf_counter() - started, 2),
    }


def settings_json(settings: BacktestSettings) -> dict[str, Any]:
    window = settings.window
    return {
        "window": "row" if window is None else f"{window.total_seconds():g}s",
        "score_model": settings.score_model,
        "models": {k: dict(v) for k, v in settings.models.items()},
        "open_after": settings.open_after,
        "clear_after": settings.clear_after,
    }


def summary(result: dict) -> list[str]:
    """The table ``floorsight eval skab`` prints: this detector against SKAB's leaderboard."""
    o = result["outliers"]
    nab = result["changepoints_nab"]
    folders = sorted({Path(f).parent.name for f in result["files"]})
    s = result["settings"]
    lines = [
        f"SKAB {','.join(folders)}: {len(result['files'])} files, first {result['fit_rows']} "
        f"rows of each for fitting only; detector: {s['score_model']}, window {s['window']}, "
        f"outliers from {result['prediction']}",
        f"{'detector':<28}{'F1':>6}{'FAR %':>8}{'MAR %':>8}   NAB std / lowFP / lowFN",
        f"{'floorsight (online)':<28}{o['f1']:>6.2f}{o['far']:>8.2f}{o['mar']:>8.2f}   "
        f"{nab['standard']:.2f} / {nab['low_fp']:.2f} / {nab['low_fn']:.2f}",
    ]
    for name, (f1, far, mar) in LEADERBOARD_OUTLIERS.items():
        cp = LEADERBOARD_CHANGEPOINTS.get(name)
        cps = " / ".join(f"{v:.2f}" for v in cp) if cp else "-"
        lines.append(f"{name + ' (paper)':<28}{f1:>6.2f}{far:>8.2f}{mar:>8.2f}   {cps}")
    for name, cp in LEADERBOARD_CHANGEPOINTS.items():
        if name not in LEADERBOARD_OUTLIERS:
            cps = " / ".join(f"{v:.2f}" for v in cp)
            lines.append(f"{name + ' (paper)':<28}{'-':>6}{'-':>8}{'-':>8}   {cps}")
    return lines
