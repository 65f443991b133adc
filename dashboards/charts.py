"""Plotly figures of the dashboard pages: data in, figure out, no database and no Streamlit.

Trace names are what a reader sees in the legend (``UCL``, ``LSL``, ``reference`` ...); the
tests find the traces by them.

Plotly reads titles, legend names, category ticks and hover text as a small HTML dialect (it
makes ``<a href>`` links), so text from machines and the ERP goes through :func:`text` first.
"""

from __future__ import annotations

import html

import plotly.graph_objects as go
import polars as pl

_LAYOUT = {"margin": {"l": 10, "r": 10, "t": 40, "b": 10}}
_SEVERITY_COLOURS = {"critical": "#d62728", "warning": "#ff7f0e", "info": "#1f77b4"}


def text(value):
    """Plain text for plotly: a string, or a polars series of strings, HTML-escaped."""
    if isinstance(value, pl.Series):
        return value.cast(pl.String).map_elements(text, return_dtype=pl.String)
    return html.escape(str(value), quote=False)


def _layout(fig: go.Figure, title: str, height: int = 380) -> go.Figure:
    fig.update_layout(title=text(title), height=height, **_LAYOUT)
    return fig


def gapped(part: pl.DataFrame, x: str, ys: tuple[str, ...], factor: float = 3.0) -> pl.DataFrame:
    """``part`` (sorted by ``x``) with an empty row inside every gap longer than ``factor``
    times the usual spacing, so a line breaks where the machine or product was away instead of
    drawing a straight line across the hours it did not run."""
    if part.height < 3:
        return part
    step = part[x].diff()
    usual = step.median()
    if usual is None or not usual:
        return part
    starts = part.filter(step > usual * factor).select(pl.col(x) - usual / 2)
    if not starts.height:
        return part
    empty = starts.with_columns(pl.lit(None, dtype=part[c].dtype).alias(c) for c in ys)
    return pl.concat([part.select(x, *ys), empty], how="diagonal").sort(x)


def _flags(fig: go.Figure, x, y, name: str, symbol: str, labels: pl.Series) -> None:
    """Red markers for points that raised something, with what they raised on hover."""
    fig.add_scatter(
        x=x,
        y=y,
        mode="markers",
        name=name,
        marker={"symbol": symbol, "size": 10, "color": "#d62728"},
        text=text(labels),
        hovertemplate="%{x}<br>%{y}<br>%{text}<extra></extra>",
    )


def _step(fig: go.Figure, x, y, name: str, dash: str, colour: str | None = None) -> None:
    """A limit line that changes only where the product changes (a step, not a slope)."""
    line = {"dash": dash, "shape": "hv"}
    if colour:
        line["color"] = colour
    fig.add_scatter(x=x, y=y, mode="lines", name=name, line=line)


def feature_chart(frame: pl.DataFrame, machine_id: str, sensor: str) -> go.Figure:
    """A feature's window mean with the LSL/target/USL of the product running in each window."""
    fig = go.Figure()
    name = text(f"{sensor} mean")
    fig.add_scatter(x=frame["window_end"], y=frame["mean"], mode="lines", name=name)
    for col, dash in (("lsl", "dash"), ("target", "dot"), ("usl", "dash")):
        if frame[col].null_count() < frame.height:
            _step(fig, frame["window_end"], frame[col], col.upper(), dash)
    return _layout(fig, f"{machine_id} · {sensor} (window mean) with spec limits from ERP")


def control_chart(points: pl.DataFrame, title: str) -> go.Figure:
    """Individuals chart: points, CL/UCL/LCL per product, LSL/USL from ERP, violations marked.

    ``points``: window_end, value, product, center, lcl, ucl, lsl, usl, rules (names of the run
    rules the point violates, "" if none).
    """
    fig = go.Figure()
    drawn = gapped(points, "window_end", ("value", "product", "center", "ucl", "lcl", "lsl", "usl"))
    x = drawn["window_end"]
    fig.add_scatter(
        x=x,
        y=drawn["value"],
        mode="lines+markers",
        name="value",
        marker={"size": 4},
        customdata=text(drawn["product"]),
        hovertemplate="%{x}<br>%{y}<br>%{customdata}<extra></extra>",
    )
    _step(fig, x, drawn["center"], "CL", "solid", "#2ca02c")
    _step(fig, x, drawn["ucl"], "UCL", "dash", "#2ca02c")
    _step(fig, x, drawn["lcl"], "LCL", "dash", "#2ca02c")
    if points["lsl"].null_count() < points.height:
        _step(fig, x, drawn["lsl"], "LSL", "dot", "#d62728")
        _step(fig, x, drawn["usl"], "USL", "dot", "#d62728")
    bad = points.filter(pl.col("rules") != "")
    if bad.height:
        _flags(fig, bad["window_end"], bad["value"], "violation", "x", bad["rules"])
    return _layout(fig, title, 420)


def capability_trend(trend: pl.DataFrame, level: float, title: str) -> go.Figure:
    """The rolling Cpk and Ppk of one product × characteristic over time, each work order's
    final Cpk, and the Cpk level below which the stream flags.

    ``trend``: scope, work_order, window_end, final, cpk, ppk (``queries.capability_trend``).
    """
    fig = go.Figure()
    rolling = gapped(trend.filter(pl.col("scope") == "rolling"), "window_end", ("cpk", "ppk"))
    for col, name in (("cpk", "Cpk"), ("ppk", "Ppk")):
        fig.add_scatter(x=rolling["window_end"], y=rolling[col], mode="lines", name=name)
    orders = trend.filter(pl.col("final"))
    if orders.height:
        fig.add_scatter(
            x=orders["window_end"],
            y=orders["cpk"],
            mode="markers",
            name="work order Cpk",
            marker={"symbol": "diamond", "size": 9},
            text=text(orders["work_order"]),
            hovertemplate="%{x}<br>Cpk %{y:.2f}<br>%{text}<extra></extra>",
        )
    fig.add_hline(y=level, line={"dash": "dot", "color": "#d62728"}, name="Cpk level")
    return _layout(fig, title, 320)


def distributions(reference: list[float], current: list[float], title: str) -> go.Figure:
    """Histogram of the reference against the recent values (same bins, as shares)."""
    fig = go.Figure()
    fig.add_histogram(x=reference, name="reference", histnorm="probability", opacity=0.6)
    fig.add_histogram(x=current, name="now", histnorm="probability", opacity=0.6)
    fig.update_layout(barmode="overlay")
    return _layout(fig, title, 320)


def drift_statistics(
    stats: pl.DataFrame, psi_limit: float, fired: pl.DataFrame, title: str
) -> go.Figure:
    """PSI and KS of each feature over time, the PSI limit, and when drift detectors fired.

    ``stats``: window_end, feature, psi, ks, drifted; ``fired``: window_end, source.
    """
    fig = go.Figure()
    for (feature,), rows in stats.group_by("feature", maintain_order=True):
        part = gapped(rows, "window_end", ("psi", "ks"))
        name = text(f"PSI {feature}")
        fig.add_scatter(x=part["window_end"], y=part["psi"], mode="lines", name=name)
        fig.add_scatter(
            x=part["window_end"],
            y=part["ks"],
            mode="lines",
            name=text(f"KS {feature}"),
            line={"dash": "dot"},
        )
    if stats.height:
        fig.add_hline(y=psi_limit, line_dash="dash", annotation_text="PSI limit")
    if fired.height:
        top = max(stats["psi"].max() or 0.0, stats["ks"].max() or 0.0, psi_limit) * 1.05
        _flags(
            fig,
            fired["window_end"],
            [top] * fired.height,
            "drift detected",
            "triangle-down",
            fired["source"],
        )
    return _layout(fig, title, 320)


def oee_bars(table: pl.DataFrame) -> go.Figure:
    """Availability, performance, quality and OEE per machine (missing factors left out)."""
    fig = go.Figure()
    for col in ("availability", "performance", "quality", "oee"):
        fig.add_bar(
            x=text(table["machine_id"]), y=table[col], name=col.upper() if col == "oee" else col
        )
    fig.update_layout(barmode="group", yaxis={"tickformat": ".0%", "range": [0, 1.05]})
    return _layout(fig, "OEE this shift", 300)


def alert_severity_bars(counts: pl.DataFrame) -> go.Figure:
    """Open alerts per machine stacked by severity. ``counts``: machine_id, severity, alerts."""
    fig = go.Figure()
    for (severity,), part in counts.group_by("severity", maintain_order=True):
        fig.add_bar(
            x=text(part["machine_id"]),
            y=part["alerts"],
            name=text(severity),
            marker_color=_SEVERITY_COLOURS.get(severity),
        )
    fig.update_layout(barmode="stack", yaxis={"dtick": 1, "title": "alerts"})
    return _layout(fig, "Open alerts by severity", 300)


def score_lines(series: pl.DataFrame, title: str, y_title: str) -> go.Figure:
    """One line per machine. ``series``: machine_id, window_end, value."""
    fig = go.Figure()
    for (machine_id,), rows in series.group_by("machine_id", maintain_order=True):
        part = gapped(rows, "window_end", ("value",))
        fig.add_scatter(x=part["window_end"], y=part["value"], mode="lines", name=text(machine_id))
    fig.update_layout(yaxis_title=y_title)
    return _layout(fig, title, 320)


def predicted_vs_measured(pairs: pl.DataFrame, title: str) -> go.Figure:
    """Scatter of prediction against lab measurement, one colour per machine, with the
    identity line. ``pairs``: machine_id, predicted, measured."""
    fig = go.Figure()
    for (machine_id,), part in pairs.group_by("machine_id", maintain_order=True):
        name = text(machine_id)
        fig.add_scatter(x=part["measured"], y=part["predicted"], mode="markers", name=name)
    if pairs.height:
        lo = min(pairs["measured"].min(), pairs["predicted"].min())
        hi = max(pairs["measured"].max(), pairs["predicted"].max())
        fig.add_scatter(
            x=[lo, hi],
            y=[lo, hi],
            mode="lines",
            name="predicted = measured",
            line={"dash": "dot", "color": "grey"},
        )
    fig.update_layout(xaxis_title="measured in the lab", yaxis_title="predicted")
    return _layout(fig, title, 320)


def genealogy(lots: list[str], batch_rows: pl.DataFrame, genealogy: pl.DataFrame) -> go.Figure:
    """Sankey: material lots -> batches -> customer orders.

    ``batch_rows``: batch_id, customer_order; ``genealogy``: material_lot, batch_id.
    """
    batches = batch_rows["batch_id"].to_list()
    orders = sorted({o for o in batch_rows["customer_order"].to_list() if o})
    links = genealogy.filter(pl.col("material_lot").is_in(lots) & pl.col("batch_id").is_in(batches))
    nodes = [*lots, *batches, *orders]
    index = {name: i for i, name in enumerate(nodes)}
    source, target = [], []
    for lot, batch in links.select("material_lot", "batch_id").iter_rows():
        source.append(index[lot])
        target.append(index[batch])
    for batch, order in batch_rows.select("batch_id", "customer_order").iter_rows():
        if order:
            source.append(index[batch])
            target.append(index[order])
    fig = go.Figure(
        go.Sankey(
            node={"label": nodes, "pad": 12},
            link={"source": source, "target": target, "value": [1] * len(source)},
        )
    )
    return _layout(fig, "Genealogy: material lots → batches → customer orders", 260)
