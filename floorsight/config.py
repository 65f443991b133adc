"""Paths and settings, all derived from the project root and the environment.

``FLOORSIGHT_HOME`` (or a ``.env`` file in the working directory) moves everything the platform
writes (DuckDB files, ERP context drops, MLflow store) away from the default ``./var``.
"""

from __future__ import annotations

import os
from pathlib import Path

from dotenv import load_dotenv

PROJECT_ROOT = Path(__file__).resolve().parents[1]

load_dotenv(override=False)


def home() -> Path:
    """Folder for everything floorsight writes at run time."""
    return Path(os.environ.get("FLOORSIGHT_HOME", Path.cwd() / "var")).resolve()


def default_db_path() -> Path:
    return home() / "floorsight.duckdb"


def default_context_dir() -> Path:
    return home() / "erp"


def mlflow_tracking_uri() -> str:
    """MLflow store: ``MLFLOW_TRACKING_URI`` or a SQLite file under :func:`home`."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{home() / 'mlflow.db'}"
