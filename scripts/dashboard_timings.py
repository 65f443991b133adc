"""How long each dashboard page takes to draw, and how long it holds the database file.

The pipeline's writer waits while a reader has the file open, so the number that matters for
the pipeline is how long a page refresh keeps its read-only connections open. Runs every page
once with Streamlit's AppTest (in this process) on a database and prints a Markdown table::

    .venv/bin/python scripts/dashboard_timings.py --db var/shots/floorsight.duckdb

(``scripts/screenshots.py --keep var/shots`` builds that database: 13 simulated hours of a
3-machine plant.)
"""

from __future__ import annotations

import argparse
import os
import secrets
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import bcrypt
import yaml
from streamlit.testing.v1 import AppTest

from floorsight.storage import Database

APP = Path(__file__).resolve().parents[1] / "dashboards" / "app.py"
PAGES = (
    None,
    "page_alerts.py",
    "page_spc.py",
    "page_drift.py",
    "page_models.py",
    "page_traceability.py",
    "page_data_quality.py",
)

held: list[float] = []
_read = Database.read


@contextmanager
def timed_read(self):
    start = time.perf_counter()
    with _read(self) as con:
        yield con
    held.append(time.perf_counter() - start)


def _timing_user(folder: Path) -> tuple[str, str]:
    """A users file with one viewer (a cheap bcrypt hash: signing in is not what is timed)."""
    password = secrets.token_urlsafe(16)
    users = folder / "dashboard_users.yaml"
    entry = {
        "name": "timer",
        "password": bcrypt.hashpw(password.encode(), bcrypt.gensalt(4)).decode(),
        "roles": ["viewer"],
    }
    users.write_text(yaml.safe_dump({"credentials": {"usernames": {"timer": entry}}}))
    users.chmod(0o600)
    os.environ["FLOORSIGHT_DASHBOARD_USERS"] = str(users)
    os.environ["FLOORSIGHT_DASHBOARD_COOKIE_KEY"] = secrets.token_urlsafe(32)
    return "timer", password


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", type=Path, required=True)
    parser.add_argument("--runs", type=int, default=3, help="runs per page (the median is shown)")
    args = parser.parse_args()
    os.environ["FLOORSIGHT_DB"] = str(args.db)
    user, password = _timing_user(Path(tempfile.mkdtemp()))
    Database.read = timed_read
    print("| page | draw (median) | read connections | file held open (sum) | longest |")
    print("| --- | --- | --- | --- | --- |")
    for page in PAGES:
        draws, sums, counts, longest = [], [], [], []
        for _ in range(args.runs):
            at = AppTest.from_file(str(APP), default_timeout=300)
            at.run()
            at.text_input[0].input(user)
            at.text_input[1].input(password)
            at.button[0].click().run()
            if page:
                at.switch_page(page)
            held.clear()
            start = time.perf_counter()
            at.run()
            draws.append(time.perf_counter() - start)
            sums.append(sum(held))
            counts.append(len(held))
            longest.append(max(held, default=0.0))
            if at.exception:
                raise SystemExit(f"{page}: {at.exception[0].value}")
        k = len(draws) // 2
        print(
            f"| {page or 'page_overview.py'} | {sorted(draws)[k]:.2f} s | {sorted(counts)[k]} "
            f"| {sorted(sums)[k] * 1000:.0f} ms | {sorted(longest)[k] * 1000:.0f} ms |"
        )


if __name__ == "__main__":
    main()
