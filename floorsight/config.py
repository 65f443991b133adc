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
    """``MLFLOW_TRACKING_URI``, or a SQLite store under the home folder (tracking and registry)."""
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    path = home() / "mlflow" / "mlflow.db"
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


def mlflow_artifact_location(tracking_uri: str) -> str:
    """Where runs of a new experiment keep their artifacts: beside a SQLite store's file, else
    the server's default (None-like empty string is not allowed, so a folder under home)."""
    if tracking_uri.startswith("sqlite:///"):
        return (Path(tracking_uri.removeprefix("sqlite:///")).parent / "artifacts").as_uri()
    return (home() / "mlflow" / "artifacts").as_uri()
