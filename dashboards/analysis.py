"""The computations behind the SPC and drift pages, on frames read from the database.

They reuse the models' own code instead of re-implementing it (capability from
``models/spc.py``); control charts and drift are read as the stream stored them (the ``spc``
table of ``models/spc_monitor.py``, the ``drift`` table of ``models/feature_drift.py``). No
Streamlit and no database here: plain functions of frames.
"""

from __future__ import annotations

import math

import polars as pl

from floorsight.models.spc import capability

CAPABILITY_SCHEMA: dict[str, pl.DataType] = {
    "product": pl.String(),
    "n": pl.Int64(),
    "mean": pl.Float64(),
    "lsl": pl.Float64(),
    "usl": pl.Float64(),
    "Cp": pl.Float64(),
    "Cpk": pl.Float64(),
    "Pp": pl.Float64(),
    "Ppk": pl.Float64(),
}

DRIFT_SCHEMA: dict[str, pl.DataType] = {
    "window_end": pl.Datetime("us", "UTC"),
    "feature": pl.String(),
    "psi": pl.Float64(),
    "ks": pl.Float64(),
    "limit": pl.Float64(),
    "drifted": pl.Boolean(),
}


def capability_table(values: pl.DataFrame) -> pl.DataFrame:
    """Cp, Cpk, Pp, Ppk per product of individual ``values`` (product, value, lsl, usl) in
    time order: the lab's single parts, which do not pass through the stream.

    σ within is MR̄ / d2 of consecutive values of the product, σ overall their sample standard
    deviation (``models.spc.capability``). Products without spec limits or with fewer than two
    values are left out. The in-line capability is the stream's (:func:`stream_capability`).
    """
    rows = []
    for (product,), part in values.filter(
        pl.col("lsl").is_not_null() & pl.col("usl").is_not_null()
    ).group_by("product", maintain_order=True):
        if part.height < 2:
            continue
        lsl, usl = part["lsl"][-1], part["usl"][-1]
        c = capability(part["value"].to_list(), lsl, usl)
        rows.append(
            {
                "product": product,
                "n": part.height,
                "mean": c.mean,
                "lsl": lsl,
                "usl": usl,
                "Cp": _finite(c.cp),
                "Cpk": _finite(c.cpk),
                "Pp": _finite(c.pp),
                "Ppk": _finite(c.ppk),
            }
        )
    return pl.DataFrame(rows, schema=CAPABILITY_SCHEMA).sort("product")


def stream_capability(rows: pl.DataFrame) -> pl.DataFrame:
    """Rows of the stream's ``capability`` table (``queries.capability_now``) in the columns
    of :func:`capability_table`, with what they are an estimate of: ``as of`` (its window),
    ``windows`` and ``basis`` (``subgroups``: every reading of the windows pooled; ``parts``:
    a characteristic held per machine cycle, one value per part)."""
    if not rows.height:
        return pl.DataFrame(schema=CAPABILITY_SCHEMA)
    return rows.select(
        "product", pl.col("n").cast(pl.Int64), "mean", "lsl", "usl", *_CAPABILITY_NAMES, "basis"
    )


def work_order_capability(trend: pl.DataFrame) -> pl.DataFrame:
    """The newest row of each work order in ``trend`` (``queries.capability_trend``), newest
    order first: its final row once it has ended, else its running one."""
    return (
        trend.filter(pl.col("scope") == "work_order")
        .sort("window_end", "final", descending=True)  # an order's final row before its others
        .unique("work_order", keep="first", maintain_order=True)
        .select("work_order", "final", "n", *_CAPABILITY_NAMES)
    )


#: the ``capability`` table's columns as the pages name them
_CAPABILITY_NAMES = (
    pl.col("cp").alias("Cp"),
    pl.col("cpk").alias("Cpk"),
    pl.col("pp").alias("Pp"),
    pl.col("ppk").alias("Ppk"),
    pl.col("window_end").alias("as of"),
    pl.col("n_windows").alias("windows"),
)


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


def drift_series(rows: pl.DataFrame) -> pl.DataFrame:
    """The PSI of each feature over time, and the multivariate Σ PSI, as the stream stored them
    (``drift`` table rows: ``queries.drift_rows``), in the drift chart's form (window_end,
    feature, psi, ks, limit, drifted; ``ks`` is not stored: null)."""
    stats = rows.filter(pl.col("detector").is_in(["psi", "multivariate"]))
    return stats.select(
        pl.col("window_end").cast(DRIFT_SCHEMA["window_end"]),
        "feature",
        pl.col("statistic").alias("psi"),
        pl.lit(None, pl.Float64).alias("ks"),
        "limit",
        "drifted",
    ).sort("window_end", "feature")


def drift_firings(rows: pl.DataFrame) -> pl.DataFrame:
    """When drift was detected (window_end, source): the onset of each statistic beyond its
    limit (not every window while it stays there) and every detector firing past its limit."""
    stats = rows.filter(pl.col("detector").is_in(["psi", "multivariate"])).sort("window_end")
    before = pl.col("drifted").shift(1).over("feature").fill_null(False)
    onsets = stats.filter(pl.col("drifted") & ~before).select(
        pl.col("window_end").cast(DRIFT_SCHEMA["window_end"]),
        source=pl.format("{} of {} beyond its limit", "detector", "feature"),
    )
    fired = rows.filter(pl.col("detector").is_in(["adwin", "kswin"]) & pl.col("drifted"))
    return pl.concat(
        [
            onsets,
            fired.select(
                pl.col("window_end").cast(DRIFT_SCHEMA["window_end"]),
                source=pl.format("{} on {}", "detector", "feature"),
            ),
        ]
    ).sort("window_end")
