"""Dashboards: the Streamlit app (``app.py``) and the read queries behind it (``queries``).

Dashboards only read the tables the pipeline writes, through short read-only connections.
"""

from __future__ import annotations

from pathlib import Path

#: Path of the Streamlit script, for ``streamlit run``.
APP = Path(__file__).with_name("app.py")

__all__ = ["APP"]
