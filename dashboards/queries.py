"""Parameterised read queries behind the dashboard pages (no SQL is built from user input).

Every function takes an open read-only connection (see ``common.snapshot``), so a page runs
all its queries in one short visit to the database file. Tables that may not exist yet (the
ERP mirrors, ``alert_events``, ``validation_results``) are checked first and read as empty.
"""

from __future__ import annotations

from datetime import datetime

import duckdb
import polars as pl

from floorsight.dashboards.common import frame, has_table

Con = duckdb.DuckDBPyConnection
_EPOCH_START = "'-infinity'::TIMESTAMPTZ"


def table_counts(con: Con) -> dict[str, int]:
    return frame(
        con,
        """SELECT (SELECT count(*) FROM features) AS feature_rows,
                  (SELECT count(*) FROM alerts) AS alerts,
                  (SELECT count(*) FROM alerts
                   WHERE cleared_at IS NULL AND status <> 'resolved') AS active_alerts,
                  (SELECT count(*) FROM dead_letters) AS dead_letters""",
    ).row(0, named=True)


def latest_window_end(con: Con) -> datetime | None:
    """The plant's "now": the end of the newest window the pipeline wrote (event time)."""
    return frame(con, "SELECT max(window_end) AS t FROM features")["t"][0]


def window_seconds(con: Con) -> float:
    """The length of a feature window (the longest, as changeovers cut some short)."""
    value = frame(con, "SELECT epoch(max(window_end - window_start)) AS s FROM features")["s"][0]
    return float(value) if value else 10.0


# --------------------------------------------------------------------------------------------
# machines and their context


def machines(con: Con) -> pl.DataFrame:
    """Every machine with its line: ``erp_machines.line`` when the ERP has a machine master,
    else the machine type of the products it runs (``erp_products.machine_type``)."""
    if has_table(con, "erp_machines"):
        line = "(SELECT any_value(m.line::VARCHAR) FROM erp_machines m WHERE m.machine_id = x.id)"
    elif has_table(con, "erp_products"):
        line = """(SELECT any_value(p.machine_type::VARCHAR) FROM work_orders w
                   JOIN erp_products p ON p.product = w.product WHERE w.machine_id = x.id)"""
    else:
        line = "''"
    return frame(
        con,
        f"""SELECT x.id AS machine_id, coalesce({line}, '') AS line
            FROM (SELECT machine_id AS id FROM work_orders
                  UNION SELECT DISTINCT machine_id FROM features) x
            ORDER BY line, machine_id""",
    )


def sensors(con: Con, machine_id: str | None = None) -> list[str]:
    return frame(
        con,
        """SELECT DISTINCT sensor FROM features
           WHERE ?::VARCHAR IS NULL OR machine_id = ?::VARCHAR ORDER BY 1""",
        [machine_id, machine_id],
    )["sensor"].to_list()


def products_of(con: Con, machine_id: str) -> pl.DataFrame:
    """Products a machine has run, the most recent first."""
    return frame(
        con,
        """SELECT product, max(window_end) AS last_window FROM features
           WHERE machine_id = ? AND product <> '' GROUP BY product ORDER BY last_window DESC""",
        [machine_id],
    )


def work_orders_between(con: Con, start: datetime, end: datetime) -> pl.DataFrame:
    """Work orders planned (in part) inside ``[start, end)``."""
    return frame(
        con,
        """SELECT work_order, machine_id, product, material_lot, start, "end" FROM work_orders
           WHERE start < ? AND "end" > ? ORDER BY machine_id, start""",
        [end, start],
    )


def work_orders_at(con: Con, at: datetime) -> pl.DataFrame:
    """The work order each machine is scheduled to run at ``at``."""
    return frame(
        con,
        """SELECT work_order, machine_id, product, material_lot FROM work_orders
           WHERE start <= ? AND "end" > ? ORDER BY machine_id, start""",
        [at, at],
    )


def setups_at(con: Con, at: datetime) -> list[str]:
    """Machines in a setup (a batch started, not yet producing) at ``at``."""
    if not has_table(con, "erp_batches"):
        return []
    return frame(
        con,
        """SELECT DISTINCT machine_id FROM erp_batches
           WHERE TRY_CAST(start AS TIMESTAMPTZ) <= ? AND TRY_CAST(setup_end AS TIMESTAMPTZ) > ?""",
        [at, at],
    )["machine_id"].to_list()


def maintenance_at(con: Con, at: datetime) -> dict[str, str]:
    """Machine -> the kind of maintenance (repair, tool change, ...) it is down for at ``at``."""
    if not has_table(con, "erp_maintenance_log"):
        return {}
    rows = frame(
        con,
        """SELECT machine_id::VARCHAR AS machine_id, any_value(kind::VARCHAR) AS kind
           FROM erp_maintenance_log
           WHERE kind::VARCHAR <> 'failure' AND TRY_CAST(start AS TIMESTAMPTZ) <= ?
             AND TRY_CAST("end" AS TIMESTAMPTZ) > ?
           GROUP BY 1""",
        [at, at],
    )
    return dict(rows.iter_rows())


def last_windows(con: Con) -> dict[str, datetime]:
    """Machine -> end of its newest window (when it last sent readings)."""
    rows = frame(con, "SELECT machine_id, max(window_end) AS t FROM features GROUP BY 1")
    return dict(rows.iter_rows())


def run_windows(con: Con, start: datetime, end: datetime) -> pl.DataFrame:
    """Distinct windows with readings under a work order, per machine, inside ``[start, end)``."""
    return frame(
        con,
        """SELECT DISTINCT machine_id, window_start, window_end FROM features
           WHERE work_order <> '' AND window_end > ? AND window_start < ?""",
        [start, end],
    )


def cycle_windows(con: Con, start: datetime, end: datetime) -> pl.DataFrame:
    """Measured cycle time (``cycle_time_s`` window means) with the product's ideal cycle time."""
    ideal = (
        "(SELECT any_value(p.cycle_time_s::DOUBLE) FROM erp_products p WHERE p.product = f.product)"
        if has_table(con, "erp_products")
        else "NULL::DOUBLE"
    )
    return frame(
        con,
        f"""SELECT f.machine_id, f.window_start, f.product, f.mean AS cycle_time_s,
                   {ideal} AS ideal_cycle_time_s
            FROM features f
            WHERE f.sensor = 'cycle_time_s' AND f.work_order <> '' AND f.mean IS NOT NULL
              AND f.window_end > ? AND f.window_start < ?""",
        [start, end],
    )


def quality_windows(con: Con, start: datetime, end: datetime) -> pl.DataFrame:
    """Window means of every characteristic that has spec limits for the product made."""
    return frame(
        con,
        """SELECT f.machine_id, f.window_start, f.product, f.sensor, f.mean, s.lsl, s.usl
           FROM features f
           JOIN spec_limits s ON s.product = f.product AND s.characteristic = f.sensor
           WHERE f.mean IS NOT NULL AND f.window_end > ? AND f.window_start < ?""",
        [start, end],
    )


def first_window(con: Con) -> datetime | None:
    return frame(con, "SELECT min(window_start) AS t FROM features")["t"][0]


# --------------------------------------------------------------------------------------------
# alerts


def open_alerts_by_severity(con: Con) -> pl.DataFrame:
    """Alerts nobody has resolved yet, counted per machine and severity."""
    return frame(
        con,
        """SELECT machine_id, severity, count(*)::INTEGER AS alerts FROM alerts
           WHERE status <> 'resolved' GROUP BY ALL ORDER BY ALL""",
    )


_ALERT_WHERE = """(?::VARCHAR IS NULL OR status = ?::VARCHAR
                   OR (?::VARCHAR = 'unresolved' AND status <> 'resolved'))
                  AND (?::VARCHAR IS NULL OR severity = ?::VARCHAR)
                  AND (?::VARCHAR IS NULL OR machine_id = ?::VARCHAR)"""


def _where_params(status: str | None, severity: str | None, machine_id: str | None) -> list:
    return [status, status, status, severity, severity, machine_id, machine_id]


def count_alerts(
    con: Con, status: str | None = None, severity: str | None = None, machine_id: str | None = None
) -> int:
    """``status`` is a status, ``"unresolved"`` (open or acknowledged) or None (all)."""
    return frame(
        con,
        f"SELECT count(*) AS n FROM alerts WHERE {_ALERT_WHERE}",
        _where_params(status, severity, machine_id),
    )["n"][0]


def alerts(
    con: Con,
    limit: int = 200,
    offset: int = 0,
    status: str | None = None,
    severity: str | None = None,
    machine_id: str | None = None,
) -> pl.DataFrame:
    """Alerts, most severe and newest first, one page of them."""
    return frame(
        con,
        f"""SELECT alert_id, severity, status, machine_id, cause, raised_at, last_seen,
                   cleared_at, windows, round(score, 4) AS score, work_order, product,
                   material_lot, reason
            FROM alerts WHERE {_ALERT_WHERE}
            ORDER BY CASE severity WHEN 'critical' THEN 0 WHEN 'warning' THEN 1 ELSE 2 END,
                     raised_at DESC, alert_id
            LIMIT ? OFFSET ?""",
        [*_where_params(status, severity, machine_id), limit, offset],
    )


def alert(con: Con, alert_id: str) -> dict | None:
    rows = frame(con, "SELECT * FROM alerts WHERE alert_id = ?", [alert_id])
    return rows.row(0, named=True) if rows.height else None


def batch_of(con: Con, work_order: str) -> str | None:
    if not has_table(con, "erp_batches") or not work_order:
        return None
    rows = frame(
        con, "SELECT batch_id::VARCHAR AS b FROM erp_batches WHERE work_order = ?", [work_order]
    )
    return rows["b"][0] if rows.height else None


def genealogy_tables(con: Con) -> dict[str, pl.DataFrame] | None:
    """The ERP tables ``alerts.cascade`` walks (genealogy, batches, customer orders), or None."""
    names = ("genealogy", "batches", "customer_orders")
    if not all(has_table(con, f"erp_{n}") for n in names):
        return None
    return {n: frame(con, f'SELECT * FROM "erp_{n}"') for n in names}


# --------------------------------------------------------------------------------------------
# features, SPC and drift


def first_windows(con: Con, machine_id: str, sensor: str, product: str, n: int) -> pl.DataFrame:
    """The first ``n`` windows of ``product`` on a machine: its reference (phase I)."""
    return frame(
        con,
        """SELECT window_start, window_end, mean, std, last FROM features
           WHERE machine_id = ? AND sensor = ? AND product = ? AND mean IS NOT NULL
           ORDER BY window_start LIMIT ?""",
        [machine_id, sensor, product, n],
    )


def product_windows(
    con: Con, machine_id: str, sensor: str, product: str, since: datetime | None, limit: int
) -> pl.DataFrame:
    """The newest ``limit`` windows of ``product`` on a machine since ``since``, oldest first."""
    return frame(
        con,
        f"""SELECT * FROM (
                SELECT window_start, window_end, mean, std FROM features
                WHERE machine_id = ? AND sensor = ? AND product = ? AND mean IS NOT NULL
                  AND window_end >= coalesce(?::TIMESTAMPTZ, {_EPOCH_START})
                ORDER BY window_start DESC LIMIT ?)
            ORDER BY window_start""",
        [machine_id, sensor, product, since, limit],
    )


def drift_rows(
    con: Con, machine_id: str, product: str, sensor: str, since: datetime | None
) -> pl.DataFrame:
    """The ``drift`` table's rows (``models.feature_drift``) of one sensor's features and of the
    multivariate statistic, for one product on a machine since ``since``, oldest first."""
    if not has_table(con, "drift"):
        return frame(con, f"SELECT * FROM ({_NO_DRIFT}) WHERE false")
    return frame(
        con,
        f"""SELECT window_end, feature, detector, statistic, "limit", drifted,
                   reference_windows, current_windows
            FROM drift
            WHERE machine_id = ? AND product = ?
              AND (starts_with(feature, ?) OR feature = 'multivariate')
              AND window_end >= coalesce(?::TIMESTAMPTZ, {_EPOCH_START})
            ORDER BY window_end, feature, detector""",
        [machine_id, product, f"{sensor}.", since],
    )


_NO_DRIFT = """SELECT NULL::TIMESTAMPTZ AS window_end, NULL::VARCHAR AS feature,
    NULL::VARCHAR AS detector, NULL::DOUBLE AS statistic, NULL::DOUBLE AS "limit",
    NULL::BOOLEAN AS drifted, NULL::INTEGER AS reference_windows,
    NULL::INTEGER AS current_windows"""


def spec_characteristics(con: Con, machine_id: str) -> list[str]:
    """Sensors of a machine that have spec limits for a product it ran (its quality)."""
    return frame(
        con,
        """SELECT DISTINCT f.sensor FROM features f
           JOIN spec_limits s ON s.product = f.product AND s.characteristic = f.sensor
           WHERE f.machine_id = ? ORDER BY 1""",
        [machine_id],
    )["sensor"].to_list()


def spc_points(
    con: Con, machine_id: str, product: str, characteristic: str, since: datetime | None
) -> pl.DataFrame:
    """The stream's individuals chart of one product's characteristic on a machine (table
    ``spc``, written by ``models/spc_monitor.py``) since ``since``, oldest first: each window
    mean with the limits it was judged against and the rules it violated; empty before the
    table exists."""
    if not has_table(con, "spc"):
        return pl.DataFrame()
    return frame(
        con,
        f"""SELECT window_start, window_end, work_order, product, value, center, lcl, ucl,
                   lsl, usl, rules, severity
            FROM spc
            WHERE machine_id = ? AND product = ? AND characteristic = ?
              AND window_end >= coalesce(?::TIMESTAMPTZ, {_EPOCH_START})
            ORDER BY window_start, work_order""",
        [machine_id, product, characteristic, since],
    )


def capability_now(con: Con, machine_id: str, characteristic: str) -> pl.DataFrame:
    """The stream's newest rolling capability of one characteristic per product of a machine
    (table ``capability``, written by ``models/capability.py``); empty before it exists."""
    if not has_table(con, "capability"):
        return pl.DataFrame()
    return frame(
        con,
        """SELECT product, window_end, basis, n_windows, n, mean, lsl, usl, cp, cpk, pp, ppk
           FROM capability
           WHERE machine_id = ? AND characteristic = ? AND scope = 'rolling'
           QUALIFY row_number() OVER (PARTITION BY product ORDER BY window_end DESC) = 1
           ORDER BY product""",
        [machine_id, characteristic],
    )


def capability_trend(
    con: Con, machine_id: str, product: str, characteristic: str, since: datetime | None
) -> pl.DataFrame:
    """The capability rows of one product × characteristic of a machine since ``since``, both
    scopes (rolling, work_order), oldest first; empty before the table exists."""
    if not has_table(con, "capability"):
        return pl.DataFrame()
    return frame(
        con,
        f"""SELECT scope, work_order, window_end, final, basis, n_windows, n, mean,
                   cp, cpk, pp, ppk
            FROM capability
            WHERE machine_id = ? AND product = ? AND characteristic = ?
              AND window_end >= coalesce(?::TIMESTAMPTZ, {_EPOCH_START})
            ORDER BY window_end, scope, final""",
        [machine_id, product, characteristic, since],
    )


def lab_results(con: Con, machine_id: str, characteristic: str, now: datetime) -> pl.DataFrame:
    """Lab results of a machine's parts that had arrived by ``now`` (they come hours later)."""
    if not has_table(con, "erp_lab_results"):
        return pl.DataFrame()
    return frame(
        con,
        """SELECT l.product::VARCHAR AS product, TRY_CAST(l.part_made_at AS TIMESTAMPTZ)
                  AS part_made_at, l.value::DOUBLE AS value, s.lsl, s.usl
           FROM erp_lab_results l
           JOIN spec_limits s ON s.product = l.product AND s.characteristic = l.characteristic
           WHERE l.machine_id = ? AND l.characteristic = ?
             AND TRY_CAST(l.available_at AS TIMESTAMPTZ) <= ?
           ORDER BY part_made_at""",
        [machine_id, characteristic, now],
    )


def model_events(
    con: Con, machine_id: str, prefix: str, since: datetime | None = None
) -> pl.DataFrame:
    """Windows a model whose name starts with ``prefix`` flagged on a machine."""
    return frame(
        con,
        f"""SELECT window_end, model, score, evidence FROM scores
            WHERE machine_id = ? AND starts_with(model, ?) AND is_anomaly
              AND window_end >= coalesce(?::TIMESTAMPTZ, {_EPOCH_START})
            ORDER BY window_end""",
        [machine_id, prefix, since],
    )


def alerts_of_cause(
    con: Con, machine_id: str, cause_part: str, since: datetime | None = None
) -> pl.DataFrame:
    return frame(
        con,
        f"""SELECT alert_id, cause, raised_at, status, reason FROM alerts
            WHERE machine_id = ? AND contains(cause, ?)
              AND last_seen >= coalesce(?::TIMESTAMPTZ, {_EPOCH_START})
            ORDER BY raised_at""",
        [machine_id, cause_part, since],
    )


# --------------------------------------------------------------------------------------------
# models


def model_metrics(con: Con) -> pl.DataFrame:
    """Per model in the score table: windows scored, share flagged, mean score, last window;
    the champion's per registered version (``version``: ``<name>@v<n>`` from its evidence,
    NULL for the other models, whose evidence need not be JSON)."""
    return frame(
        con,
        """SELECT model, CASE WHEN model = 'champion' THEN
                      json_extract_string(evidence, '$.model') || '@v'
                      || json_extract_string(evidence, '$.version') END AS version,
                  count(*)::INTEGER AS windows_scored,
                  avg(is_anomaly::INTEGER) AS flagged_share, avg(score) AS mean_score,
                  count(DISTINCT machine_id)::INTEGER AS machines, max(window_end) AS last_window
           FROM scores GROUP BY ALL ORDER BY model, version NULLS FIRST""",
    )


def alert_feedback(con: Con) -> pl.DataFrame:
    """Per alert cause: alerts raised, and how the people who resolved them labelled them."""
    if has_table(con, "alert_events"):
        labels = """(SELECT e.alert_id, last(e.label ORDER BY e."at") AS label
                     FROM alert_events e WHERE e.action = 'resolved' GROUP BY 1)"""
    else:
        labels = "(SELECT NULL::VARCHAR AS alert_id, NULL::VARCHAR AS label WHERE false)"
    return frame(
        con,
        f"""SELECT a.cause, count(*)::INTEGER AS alerts,
                   count(*) FILTER (WHERE a.status = 'resolved')::INTEGER AS resolved,
                   count(*) FILTER (WHERE l.label = 'true_problem')::INTEGER AS true_problems,
                   count(*) FILTER (WHERE l.label = 'false_alarm')::INTEGER AS false_alarms
            FROM alerts a LEFT JOIN {labels} l ON l.alert_id = a.alert_id
            GROUP BY a.cause ORDER BY a.cause""",
    )


def latest_scores(con: Con, model: str) -> pl.DataFrame:
    """The newest score of ``model`` on every machine."""
    return frame(
        con,
        """SELECT machine_id, window_end, product, score, is_anomaly, evidence FROM scores
           WHERE model = ? QUALIFY row_number() OVER (
               PARTITION BY machine_id ORDER BY window_end DESC) = 1
           ORDER BY machine_id""",
        [model],
    )


def score_series(con: Con, model: str, since: datetime | None) -> pl.DataFrame:
    return frame(
        con,
        f"""SELECT machine_id, window_end, score, evidence FROM scores
            WHERE model = ? AND window_end >= coalesce(?::TIMESTAMPTZ, {_EPOCH_START})
            ORDER BY machine_id, window_end""",
        [model, since],
    )


def lab_vs_inline(con: Con, now: datetime, limit: int = 2000) -> pl.DataFrame:
    """Lab results that had arrived by ``now`` beside the in-line gauge's window mean when the
    part was made (same machine and characteristic), newest ``limit``."""
    if not has_table(con, "erp_lab_results"):
        return pl.DataFrame()
    return frame(
        con,
        """SELECT l.machine_id::VARCHAR AS machine_id, l.product::VARCHAR AS product,
                  l.characteristic::VARCHAR AS characteristic,
                  TRY_CAST(l.part_made_at AS TIMESTAMPTZ) AS part_made_at,
                  l.value::DOUBLE AS measured, f.mean AS inline
           FROM erp_lab_results l
           JOIN features f ON f.machine_id = l.machine_id AND f.sensor = l.characteristic
             AND f.window_start <= TRY_CAST(l.part_made_at AS TIMESTAMPTZ)
             AND f.window_end > TRY_CAST(l.part_made_at AS TIMESTAMPTZ)
           WHERE TRY_CAST(l.available_at AS TIMESTAMPTZ) <= ?
           ORDER BY part_made_at DESC LIMIT ?""",
        [now, limit],
    )


def lab_vs_predicted(con: Con, now: datetime, limit: int = 2000) -> pl.DataFrame:
    """Lab results that had arrived by ``now`` beside the deviation model's prediction for the
    window the part was made in (made before the lab result was known), newest ``limit``."""
    if not has_table(con, "erp_lab_results") or not has_table(con, "scores"):
        return pl.DataFrame()
    return frame(
        con,
        """SELECT * FROM (
             SELECT l.machine_id::VARCHAR AS machine_id, l.product::VARCHAR AS product,
                    l.characteristic::VARCHAR AS characteristic,
                    TRY_CAST(l.part_made_at AS TIMESTAMPTZ) AS part_made_at,
                    l.value::DOUBLE AS measured,
                    TRY_CAST(json_extract_string(s.evidence,
                        '$.' || l.characteristic::VARCHAR || '.predicted') AS DOUBLE) AS predicted
             FROM erp_lab_results l
             JOIN scores s ON s.machine_id = l.machine_id AND s.model = 'deviation'
               AND s.evidence <> ''
               AND s.window_start <= TRY_CAST(l.part_made_at AS TIMESTAMPTZ)
               AND s.window_end > TRY_CAST(l.part_made_at AS TIMESTAMPTZ)
             WHERE TRY_CAST(l.available_at AS TIMESTAMPTZ) <= ?)
           WHERE predicted IS NOT NULL
           ORDER BY part_made_at DESC LIMIT ?""",
        [now, limit],
    )


# --------------------------------------------------------------------------------------------
# traceability


def trace_ids(con: Con, kind: str, now: datetime | None) -> list[str]:
    """Batches, material lots or customer orders that had started by ``now``, newest first
    (the ERP also holds planned ones, not made yet)."""
    table = {"batch": "erp_batches", "material lot": "work_orders"}.get(kind, "erp_batches")
    if not has_table(con, table) or (
        kind == "customer order" and not has_table(con, "erp_customer_orders")
    ):
        return []
    sql = {
        "batch": """SELECT batch_id::VARCHAR AS id FROM erp_batches
                    WHERE start <= coalesce(?::TIMESTAMPTZ, 'infinity'::TIMESTAMPTZ)
                    ORDER BY start DESC, 1""",
        "material lot": """SELECT material_lot AS id FROM work_orders
                           WHERE start <= coalesce(?::TIMESTAMPTZ, 'infinity'::TIMESTAMPTZ)
                           GROUP BY 1 ORDER BY min(start) DESC, 1""",
        "customer order": """SELECT customer_order::VARCHAR AS id FROM erp_batches
                             WHERE start <= coalesce(?::TIMESTAMPTZ, 'infinity'::TIMESTAMPTZ)
                             GROUP BY 1 ORDER BY max(start) DESC, 1""",
    }[kind]
    return frame(con, sql, [now])["id"].to_list()


def batches(con: Con, batch_ids: list[str]) -> pl.DataFrame:
    return frame(
        con,
        """SELECT batch_id, work_order, machine_id, product, start, "end", customer_order,
                  good_parts, scrap_parts
           FROM erp_batches WHERE list_contains(?, batch_id::VARCHAR) ORDER BY start""",
        [batch_ids],
    )


def lots(con: Con, lot_ids: list[str]) -> pl.DataFrame:
    if not has_table(con, "erp_material_lots"):
        return pl.DataFrame({"lot_id": lot_ids})
    return frame(
        con,
        """SELECT lot_id, material, supplier, received FROM erp_material_lots
           WHERE list_contains(?, lot_id::VARCHAR) ORDER BY lot_id""",
        [lot_ids],
    )


def alerts_touching(con: Con, work_orders: list[str], lot_ids: list[str]) -> pl.DataFrame:
    """Alerts raised on any of ``work_orders`` or any part made from ``lot_ids``."""
    return frame(
        con,
        """SELECT alert_id, severity, status, machine_id, cause, raised_at, work_order,
                  material_lot, reason
           FROM alerts
           WHERE list_contains(?, work_order) OR list_contains(?, material_lot)
           ORDER BY raised_at DESC""",
        [work_orders, lot_ids],
    )


def lab_summary(con: Con, work_orders: list[str], now: datetime) -> pl.DataFrame:
    """Lab results arrived by ``now`` per work order: parts measured, out of spec."""
    if not has_table(con, "erp_lab_results"):
        return pl.DataFrame()
    return frame(
        con,
        """SELECT work_order::VARCHAR AS work_order, count(*)::INTEGER AS lab_samples,
                  count(*) FILTER (WHERE NOT in_spec::BOOLEAN)::INTEGER AS out_of_spec
           FROM erp_lab_results
           WHERE list_contains(?, work_order::VARCHAR)
             AND TRY_CAST(available_at AS TIMESTAMPTZ) <= ?
           GROUP BY 1 ORDER BY 1""",
        [work_orders, now],
    )


# --------------------------------------------------------------------------------------------
# data quality


def validation_results(con: Con, limit: int, offset: int) -> pl.DataFrame | None:
    """Great Expectations results, newest first; None when no validation has run yet."""
    if not has_table(con, "validation_results"):
        return None
    return frame(
        con,
        """SELECT validated_at, suite, table_name, success, evaluated, failed, report
           FROM validation_results ORDER BY validated_at DESC, suite, table_name
           LIMIT ? OFFSET ?""",
        [limit, offset],
    )


def latest_validations(con: Con) -> pl.DataFrame | None:
    if not has_table(con, "validation_results"):
        return None
    return frame(
        con,
        """SELECT suite, table_name, validated_at, success, evaluated, failed
           FROM validation_results
           QUALIFY row_number() OVER (PARTITION BY suite, table_name
                                      ORDER BY validated_at DESC) = 1
           ORDER BY suite, table_name""",
    )


def count_rows(con: Con, table: str) -> int:
    """Rows of one of the dashboard's own tables (``table`` is never user input)."""
    if table not in {"validation_results", "alerts", "alert_events", "dead_letters"}:
        raise ValueError(f"{table} is not a table the dashboard counts")
    if not has_table(con, table):
        return 0
    return frame(con, f'SELECT count(*) AS n FROM "{table}"')["n"][0]


# --------------------------------------------------------------------------------------------
# machine states and part counts from the floor (read as empty while the tables are missing)


def state_spans(con: Con, start: datetime, end: datetime) -> pl.DataFrame:
    """Machine states in force within ``[start, end)``: each stored change until the machine's
    next one (the newest until ``end``), the one in force at ``start`` included."""
    if not has_table(con, "machine_states"):
        return pl.DataFrame(
            schema={
                "machine_id": pl.String,
                "since": pl.Datetime("us", "UTC"),
                "until": pl.Datetime("us", "UTC"),
                "state": pl.String,
                "category": pl.String,
            }
        )
    return frame(
        con,
        """SELECT machine_id, since, until, state, category FROM (
               SELECT machine_id, since, state, category,
                      coalesce(lead(since) OVER (PARTITION BY machine_id ORDER BY since),
                               ?::TIMESTAMPTZ) AS until
               FROM machine_states WHERE since < ?)
           WHERE until > ? ORDER BY machine_id, since""",
        [end, end, start],
    )


def states_at(con: Con, at: datetime) -> pl.DataFrame:
    """Each machine's newest state at ``at`` (machine_id, since, state, category)."""
    if not has_table(con, "machine_states"):
        return pl.DataFrame(
            schema={
                "machine_id": pl.String,
                "since": pl.Datetime("us", "UTC"),
                "state": pl.String,
                "category": pl.String,
            }
        )
    return frame(
        con,
        """SELECT machine_id, since, state, category FROM machine_states WHERE since <= ?
           QUALIFY row_number() OVER (PARTITION BY machine_id ORDER BY since DESC) = 1""",
        [at],
    )


def part_counts_between(con: Con, start: datetime, end: datetime) -> pl.DataFrame:
    """Parts counted by the machines' good and scrap counters within ``[start, end)``."""
    if not has_table(con, "part_counts"):
        return pl.DataFrame(
            schema={
                "machine_id": pl.String,
                "signal": pl.String,
                "ts": pl.Datetime("us", "UTC"),
                "parts": pl.Int64,
            }
        )
    return frame(
        con,
        """SELECT machine_id, signal, ts, parts FROM part_counts WHERE ts >= ? AND ts < ?""",
        [start, end],
    )


def counted_machines(con: Con, end: datetime) -> set[str]:
    """Machines whose part counters reported before ``end``."""
    if not has_table(con, "part_counts"):
        return set()
    rows = frame(con, "SELECT DISTINCT machine_id FROM part_counts WHERE ts < ?", [end])
    return set(rows["machine_id"].to_list())


def ideal_cycle_times(con: Con) -> pl.DataFrame:
    """Each product's ideal cycle time in seconds (``erp_products.cycle_time_s``, the recipe's)."""
    if not has_table(con, "erp_products"):
        return pl.DataFrame(schema={"product": pl.String, "ideal_cycle_time_s": pl.Float64})
    return frame(
        con,
        """SELECT product::VARCHAR AS product, any_value(cycle_time_s::DOUBLE) AS ideal_cycle_time_s
           FROM erp_products WHERE cycle_time_s IS NOT NULL GROUP BY 1""",
    )
