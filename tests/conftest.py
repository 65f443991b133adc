from __future__ import annotations

from datetime import UTC, datetime, timedelta

import polars as pl
import pytest

from floorsight.records import READING_SCHEMA

T0 = datetime(2026, 1, 5, 6, 0, tzinfo=UTC)


def readings(rows: list[tuple[str, str, float, float]]) -> pl.DataFrame:
    """Readings from (machine, sensor, seconds after T0, value) tuples."""
    return pl.DataFrame(
        [
            {"machine_id": m, "sensor": s, "ts": T0 + timedelta(seconds=t), "value": v}
            for m, s, t, v in rows
        ],
        schema=READING_SCHEMA,
    )


@pytest.fixture
def t0() -> datetime:
    return T0
