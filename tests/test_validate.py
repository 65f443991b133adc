"""Bad readings are dead-lettered with a reason; the valid ones around them go on."""

from __future__ import annotations

import json
from datetime import timedelta

import polars as pl

from floorsight.pipelines.validate import ReadingRules, validate_readings
from floorsight.records import READING_SCHEMA
from tests.conftest import T0


def test_each_rule_names_its_reason_and_valid_rows_pass() -> None:
    batch = pl.DataFrame(
        {
            "machine_id": ["M1", "M1", "", "M1", "M9", "M1", "M1", None],
            "sensor": ["t", "t", "t", "t", "t", "t", None, "t"],
            "ts": [T0, T0, T0, T0 + timedelta(days=5), T0, T0, T0, T0],
            "value": [1.0, float("nan"), 2.0, 3.0, 4.0, 500.0, 6.0, 7.0],
        },
        schema=READING_SCHEMA,
    )
    rules = ReadingRules(known_machines=frozenset({"M1"}), ranges={"t": (0.0, 100.0)})
    checked = validate_readings(batch, rules, now=T0)
    assert checked.ok["value"].to_list() == [1.0]
    reasons = dict(
        zip(checked.dead["value"].to_list(), checked.dead["reason"].to_list(), strict=True)
    )
    assert reasons[2.0] == "machine_id missing"
    assert reasons[4.0] == "unknown machine M9"
    assert reasons[6.0] == "sensor missing"
    assert reasons[7.0] == "machine_id missing"
    assert "in the future" in reasons[3.0]
    assert reasons[500.0] == "t = 500.0 outside [0.0, 100.0]"
    nan_row = checked.dead.filter(pl.col("reason") == "value is NaN")
    assert nan_row.height == 1
    assert json.loads(nan_row["raw"][0])["machine_id"] == "M1"
    assert checked.dead["dead_letter_id"].n_unique() == checked.dead.height


def test_clean_batch_passes_untouched() -> None:
    batch = pl.DataFrame(
        {"machine_id": ["M1"], "sensor": ["t"], "ts": [T0], "value": [1.0]}, schema=READING_SCHEMA
    )
    checked = validate_readings(batch, now=T0)
    assert checked.dead is None and checked.ok.equals(batch)
