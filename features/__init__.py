"""Feature tables: event-time window statistics per machine and sensor, and their DuckDB schema.

- :func:`window_features` computes window statistics of a readings frame (batch).
- :class:`WindowAggregator` keeps the open windows of the machines in a stream and closes each
  machine's windows as its watermark passes, handing back readings that arrive too late.
- :data:`FEATURES` is the DuckDB table they are written to.
"""

from __future__ import annotations

from floorsight.features.tables import FEATURES
from floorsight.features.windows import (
    CONTEXT_COLUMNS,
    FEATURE_SCHEMA,
    STATISTICS,
    WindowAggregator,
    window_features,
)

__all__ = [
    "CONTEXT_COLUMNS",
    "FEATURES",
    "FEATURE_SCHEMA",
    "STATISTICS",
    "WindowAggregator",
    "window_features",
]
