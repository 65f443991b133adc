"""floorsight: stream analytics and predictive quality for manufacturing.

Sensor streams are joined with ERP context, turned into event-time window features in DuckDB,
scored by online models, and turned into alerts with their work order, batch and lot.
"""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["__version__"]
