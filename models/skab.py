"""SKAB's own evaluation protocol (``floorsight eval skab``).

Implemented from the benchmark's description (``../shared/data/skab/README.md``) and its
published metric code (SKAB ``core/metrics.py``, re-implemented here, not copied):

- every file on its own, the detectors run online from its first row; the first ``fit_rows``
  (400) rows are for fitting only and are not scored;
- outlier detection: TP, FP, TN, FN of ``is_anomaly`` against the ``anomaly`` column, pooled
  over the scored rows of all files; F1 = TP / (TP + (FP + FN) / 2), FAR = FP / (FP + TN)
  · 100, MAR = FN / (FN + TP) · 100;
- changepoint detection: a window of 60 s to the right of each true changepoint (a window that
  runs into the next one is cut at the next one's start); the first detection inside a window
  scores ``A_tp`` at the window's start falling to ``A_fp`` at its end along a scaled tanh;
  other detections inside a window count nothing; every detection outside the windows scores
  ``A_fp``; a window without detection scores ``A_fn``. Summed over files and normalised:
  100 · (S − S_null) / (S_perfect − S_null), with S_null = windows · A_fn and S_perfect =
  windows · A_tp. Profiles: standard (1, −0.11, −1), low FP (1, −0.22, −1), low FN (1, −0.11, −2).

The detectors are :data:`SKAB_SETTINGS` of the replay (``floorsight replay``'s code): window
means of the flow rate, a robust Mahalanobis score, a control limit from the fit rows, ADWIN on
every sensor for changepoints. Every setting was chosen on ``valve1`` files 0-7 only
(``benchmarks/skab_selection.py`` prints the log); files 8-15 are the held-out result.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path

import polars as pl

from floorsight.models.replay import ReplaySettings, replay_frame

PROFILES = {
    "standard": (1.0, -0.11, -1.0),
    "low_fp": (1.0, -0.22, -1.0),
    "low_fn": (1.0, -0.11, -2.0),
}
#: chosen on valve1 files 0-7 only (benchmarks/skab_selection.py); files 8-15 are held out
SKAB_SETTINGS = ReplaySettings(
    detector="mahalanobis",
    sensors=("Volume Flow RateRMS",),
    window=20,
    phase_one=400,
    grace_period=30,
    q=0.999,
    adapt=True,
    half_life=100,
    adwin_delta=0.02,
    adwin_clock=1,
)
#: the valve1 files every setting was chosen on, and the held-out ones (file stems)
SELECTION_FILES = tuple(str(i) for i in range(8))
HELD_OUT_FILES = tuple(str(i) for i in range(8, 16))
#: the leaderboard of the SKAB README (whole benchmark, 34 experiments)
LEADERBOARD_OUTLIERS = {
    "Conv-AE": (0.78, 13.55, 28.02),
    "MSET": (0.78, 39.73, 14.13),
    "T-squared+Q (PCA)": (0.76, 26.62, 24.92),
    "LSTM-AE": (0.74, 29.96, 25.92),
    "T-squared": (0.66, 19.21, 42.6),
    "Isolation forest": (0.29, 2.56, 82.89),
}
LEADERBOARD_CHANGEPOINTS = {
    "MSCRED": (32.42, 16.53, 40.28),
    "Isolation forest": (26.16, 19.5, 30.82),
    "T-squared+Q (PCA)": (25.35, 14.51, 31.33),
    "Conv-AE": (23.61, 21.54, 27.55),
    "LSTM-AE": (23.51, 20.11, 25.91),
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

    def scores(self) -> dict[str, float]:
        out = {}
        for profile, (s, null, perfect) in self.sums.items():
            out[profile] = 100 * (s - null) / (perfect - null) if perfect != null else 0.0
        return out


def read_skab(path: Path) -> pl.DataFrame:
    frame = pl.read_csv(path, separator=";")
    return frame.with_columns(pl.col("datetime").str.to_datetime("%Y-%m-%d %H:%M:%S"))


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


def skab_files(
    data: Path, subsets: tuple[str, ...] = ("valve1",), stems: tuple[str, ...] | None = None
) -> list[Path]:
    """The experiments of ``subsets`` in numeric order, only those named in ``stems`` if given."""
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
        raise FileNotFoundError(f"no SKAB files under {data} ({', '.join(subsets)})")
    return files


def evaluate(
    files: list[Path], settings: ReplaySettings = SKAB_SETTINGS, fit_rows: int = 400
) -> dict:
    """Run the replay detectors over each file and score them with SKAB's protocol.

    The detector's Phase I is the fit rows (``phase_one = fit_rows``), so it never learns a
    scored row before it has been flagged or not.
    """
    settings = replace(settings, phase_one=fit_rows)
    per_file = []
    outliers = Confusion()
    nab = NabTally()
    for path in files:
        frame = read_skab(path)
        sensors = frame.drop("anomaly", "changepoint")
        result = replay_frame(sensors, "datetime", settings=settings)
        scored = frame.with_columns(
            is_anomaly=result["is_anomaly"], changepoint_pred=result["changepoint"]
        ).slice(fit_rows)
        truth, flags = scored["anomaly"].cast(pl.Int8).to_list(), scored["is_anomaly"].to_list()
        outliers.add(truth, flags)
        one = Confusion()
        one.add(truth, flags)
        per_file.append(
            {
                "file": f"{path.parent.name}/{path.name}",
                "f1": round(one.f1, 4),
                "far": round(one.far, 2),
                "mar": round(one.mar, 2),
            }
        )
        nab.add(
            scored.filter(pl.col("changepoint") == 1)["datetime"].to_list(),
            scored.filter(pl.col("changepoint_pred") == 1)["datetime"].to_list(),
        )
    return {
        "files": [str(p) for p in files],
        "outliers": {
            "f1": round(outliers.f1, 4),
            "far": round(outliers.far, 2),
            "mar": round(outliers.mar, 2),
            "tp": outliers.tp,
            "fp": outliers.fp,
            "tn": outliers.tn,
            "fn": outliers.fn,
        },
        "changepoints_nab": {k: round(v, 2) for k, v in nab.scores().items()},
        "per_file": per_file,
    }
