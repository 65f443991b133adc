"""Dashboards: the Streamlit app quality engineers and maintenance live in.

- ``app.py``: the entry point (``streamlit run``), a router over the pages ``page_*.py``;
- ``queries``: the parameterised read queries, ``common``: snapshots, filters, paged tables,
  escaping of machine and ERP text;
- ``users`` (the users file, roles, cookie key; plain code), ``auth`` (sign-in with
  streamlit-authenticator), ``actions`` (alert actions under the signed-in user's name, refused
  for a role that may not);
- ``oee`` (shifts, machine states, OEE), ``analysis`` (control limits, capability, drift),
  ``charts`` (plotly figures), ``registry`` (MLflow champions): plain code, no Streamlit.

Pages read the pipeline's tables in short read-only snapshots while it writes. The one thing
they write, what people do with alerts, goes through ``floorsight.alerts.lifecycle``.
"""

from __future__ import annotations

import sys
from pathlib import Path

#: Path of the Streamlit script, for ``streamlit run``.
APP = Path(__file__).with_name("app.py")

__all__ = ["APP", "streamlit_command"]


def streamlit_command(
    db: Path,
    port: int,
    address: str = "127.0.0.1",
    users: Path | None = None,
    shift_starts: list[str] | None = None,
    shift_hours: float | None = None,
) -> list[str]:
    """The command that serves the app on ``db`` at http://``address``:``port``, signing people
    in with the users file ``users`` (default: see ``users.users_file``), with the plant's
    shifts (``HH:MM`` UTC starts and their length; default: ``oee.ShiftPlan()``). No secret is
    on it: the cookie key comes from the environment or a private file."""
    return [
        *(sys.executable, "-m", "streamlit", "run", str(APP)),
        *("--server.headless", "true", "--server.address", address),
        *("--server.port", str(port), "--browser.gatherUsageStats", "false"),
        *("--", "--db", str(db)),
        *(("--users", str(users)) if users is not None else ()),
        *(a for start in shift_starts or () for a in ("--shift-start", start)),
        *(("--shift-hours", f"{shift_hours:g}") if shift_hours is not None else ()),
    ]
