"""Dashboards: the Streamlit app (``app.py``) and the read queries behind it (``queries``).

Dashboards only read the tables the pipeline writes, through short read-only connections.
"""

from __future__ import annotations

import sys
from pathlib import Path

#: Path of the Streamlit script, for ``streamlit run``.
APP = Path(__file__).with_name("app.py")

__all__ = ["APP", "streamlit_command"]


def streamlit_command(db: Path, port: int) -> list[str]:
    """The command that serves the app on ``db`` at http://127.0.0.1:``port``."""
    return [
        *(sys.executable, "-m", "streamlit", "run", str(APP)),
        *("--server.headless", "true", "--server.address", "127.0.0.1"),
        *("--server.port", str(port), "--browser.gatherUsageStats", "false"),
        *("--", "--db", str(db)),
    ]
