"""How the SKAB settings were chosen: every candidate tried, scored on valve1 files 0-7 only.

    .venv/bin/python benchmarks/skab_selection.py [--data ../shared/data/skab]

Runs ``floorsight eval skab``'s code (SKAB's protocol: the first 400 rows of each file fit, the
rest scored) for each candidate setting on the *selection* files ``valve1/0.csv .. 7.csv`` and
prints one markdown table row per candidate. It never reads files 8-15: those are held out for
the one reported run (``floorsight eval skab --files 8-15``). The chosen settings are
``floorsight.models.skab.SKAB_SETTINGS``; docs/accuracy.md copies this table.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

from floorsight.models import skab
from floorsight.models.replay import ReplaySettings

FLOW = ("Volume Flow RateRMS",)
NO_TEMPERATURES = (
    "Accelerometer1RMS",
    "Accelerometer2RMS",
    "Current",
    "Pressure",
    "Voltage",
    "Volume Flow RateRMS",
)
MAHALANOBIS = ReplaySettings(detector="mahalanobis", grace_period=30, q=0.999)

#: (what was tried, settings); outlier rows vary the detector, changepoint rows only ADWIN
OUTLIER_CANDIDATES = [
    ("z-score per row (replay default)", ReplaySettings(grace_period=400)),
    ("Mahalanobis, all 8 sensors, per row", MAHALANOBIS),
    ("Mahalanobis, all 8 sensors, 20-row means", replace(MAHALANOBIS, window=20)),
    (
        "Mahalanobis, 6 sensors without temperatures, 20-row means",
        replace(MAHALANOBIS, sensors=NO_TEMPERATURES, window=20),
    ),
    ("flow only, per row", replace(MAHALANOBIS, sensors=FLOW)),
    *[
        (f"flow, {w}-row means", replace(MAHALANOBIS, sensors=FLOW, window=w))
        for w in (10, 20, 30, 60)
    ],
    (
        "flow, 30-row means, no learning after the fit rows",
        replace(MAHALANOBIS, sensors=FLOW, window=30, adapt=False),
    ),
    (
        "flow, 30-row means, q = 0.99",
        replace(MAHALANOBIS, sensors=FLOW, window=30, q=0.99),
    ),
    *[
        (
            f"flow, {w}-row means, half-life {h} rows",
            replace(MAHALANOBIS, sensors=FLOW, window=w, half_life=h),
        )
        for w, h in ((10, 100), (20, 50), (20, 100), (20, 200), (30, 100))
    ],
    (
        "flow and current, 20-row means, half-life 100 rows",
        replace(MAHALANOBIS, sensors=("Current", *FLOW), window=20, half_life=100),
    ),
    (
        "6 sensors without temperatures, 20-row means, half-life 100 rows",
        replace(MAHALANOBIS, sensors=NO_TEMPERATURES, window=20, half_life=100),
    ),
]
CHANGEPOINT_CANDIDATES = [
    (
        f"ADWIN every sensor, delta {d}, clock {c}",
        replace(skab.SKAB_SETTINGS, adwin_delta=d, adwin_clock=c),
    )
    for d, c in ((0.002, 32), (0.02, 32), (0.002, 1), (0.02, 1), (0.2, 1))
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path("../shared/data/skab"))
    args = ap.parse_args()
    files = skab.skab_files(args.data, ("valve1",), skab.SELECTION_FILES)
    print(f"selection files: {', '.join(f'{p.parent.name}/{p.name}' for p in files)}")
    print("| candidate | F1 | FAR % | MAR % | NAB standard |")
    print("| --- | --- | --- | --- | --- |")
    adwin = {"adwin_delta", "adwin_clock"}
    for name, settings in OUTLIER_CANDIDATES:
        o = skab.evaluate(files, settings)["outliers"]
        chosen = " **(chosen)**" if _same(settings, skab.SKAB_SETTINGS, ignore=adwin) else ""
        print(f"| {name}{chosen} | {o['f1']:.3f} | {o['far']:.2f} | {o['mar']:.2f} | - |")
    for name, settings in CHANGEPOINT_CANDIDATES:
        nab = skab.evaluate(files, settings)["changepoints_nab"]
        chosen = " **(chosen)**" if settings == skab.SKAB_SETTINGS else ""
        print(f"| {name}{chosen} | - | - | - | {nab['standard']:.2f} |")


def _same(a: ReplaySettings, b: ReplaySettings, ignore: set[str]) -> bool:
    return replace(a, **{k: getattr(b, k) for k in ignore}) == b


if __name__ == "__main__":
    main()
