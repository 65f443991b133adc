"""floorsight: stream analytics and predictive quality for manufacturing.

Sensor streams are joined with ERP context, turned into event-time window features in DuckDB,
scored by online models, and turned into alerts with their work order, batch and lot.
"""

from __future__ import annotations

import os

# Polars allocates through its own jemalloc, which by default hands freed pages back to the
# kernel within half a second; the pipeline frees and re-allocates a batch's worth of memory
# every batch, so each batch page-faulted its memory in again. Keeping freed pages for 30 s cut
# page faults by 60 % and CPU by 13 %, and transparent huge pages for its memory (``thp:always``:
# one fault and one TLB entry per 2 MB; the kernel's THP mode here is ``madvise``) cut the
# one-worker run's faults by another 80 % and its CPU by about a tenth (docs/performance.md).
# Read when polars loads, so it is set before anything imports it; a value in the environment
# wins.
os.environ.setdefault("_RJEM_MALLOC_CONF", "thp:always,dirty_decay_ms:30000,muzzy_decay_ms:30000")

__version__ = "0.1.0"
__all__ = ["__version__"]
