"""Paths, settings and secrets, all derived from the project root and the environment.

``FLOORSIGHT_HOME`` (or a ``.env`` file in the working directory) moves everything the platform
writes (DuckDB files, ERP context drops, MLflow store) away from the default ``./var``.

Secrets (passwords, DSNs with passwords, webhook keys, SMTP credentials) never travel on a
command line, where ``/proc/*/cmdline`` shows them to every user and child processes inherit
them: :func:`secret` reads them from an environment variable or from a file that only its owner
can read.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from dotenv import load_dotenv

PROJECT_ROOT = Path(__file__).resolve().parents[1]

# only the working directory's .env: python-dotenv's default search walks up from the package's
# own folder, which would read a .env the user never meant for this run
load_dotenv(Path.cwd() / ".env", override=False)


class SecretError(ValueError):
    """A secret that is missing, or kept where others can read it."""


def secret(env: str, file: Path | str | None = None, *, required: bool = False) -> str | None:
    """The secret in environment variable ``env``, else the first line of ``file``.

    A file that its group or others may read is refused (as ssh refuses such a private key):
    a secret there is no longer one. ``required`` turns a missing secret into an error naming
    the variable and the file to set.
    """
    value = os.environ.get(env)
    if value:
        return value
    if file is not None:
        path = Path(file).expanduser()
        exposed = exposed_file(path)
        if exposed:
            raise SecretError(f"{exposed} (or set {env} instead)")
        text = path.read_text(encoding="utf-8").splitlines()
        return text[0] if text else ""
    if required:
        raise SecretError(f"set the environment variable {env} (or give a private file)")
    return None


def exposed_file(path: Path) -> str | None:
    """Why ``path`` may not hold a secret (its group or others may read it), or None when only
    its owner can. A missing file raises ``FileNotFoundError`` naming it."""
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        return f"{path} is readable by others (mode {stat.filemode(mode)}): run `chmod 600 {path}`"
    return None


def private_dir(path: Path | str) -> Path:
    """``path`` created (with its parents) and made private to the user (mode 0700): recovery
    snapshots, outboxes and model state are pickles or hold alert payloads."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o700)
    return path


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
