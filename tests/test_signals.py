"""Machine states and part counters from the floor: classification, checks, state changes,
counter resets, and the flow's signal branch into a real DuckDB file."""

from __future__ import annotations

import pickle
from datetime import UTC, datetime, timedelta

import polars as pl
import pytest
from bytewax.testing import TestingSource, run_main
from hypothesis import given, settings
from hypothesis import strategies as st

from floorsight.pipelines.context import ContextStore
from floorsight.pipelines.flow import PipelineSettings, build_flow
from floorsight.pipelines.signals import (
    CHECKED_SCHEMA,
    SignalTracker,
    StatesFileError,
    StateTable,
    check_signals,
    load_states,
)
from floorsight.pipelines.validate import Catalogue, ReadingRules
from floorsight.records import SIGNAL_SCHEMA, Signals
from floorsight.simulators import build_plant
from floorsight.storage import Database
from tests.conftest import T0

NOW = T0 + timedelta(hours=1)


def t(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def signals(*rows: tuple) -> pl.DataFrame:
    """Signal rows (machine_id, signal, ts, value, text)."""
    return pl.DataFrame(list(rows), schema=SIGNAL_SCHEMA, orient="row")


def checked(*rows: tuple, table: StateTable | None = None) -> pl.DataFrame:
    result = check_signals(signals(*rows), ReadingRules(), table, now=NOW)
    assert result.dead is None, result.dead["reason"].to_list()
    return result.ok


# -- classification --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "text", "expected"),
    [
        (6, None, ("Execute", "running")),
        (4, None, ("Idle", "idle")),
        (5, None, ("Suspended", "idle")),
        (11, None, ("Held", "down")),
        (9, None, ("Aborted", "down")),
        (2, None, ("Stopped", "idle")),
        (0, None, ("Undefined", "unknown")),
        (None, "RUNNING", ("RUNNING", "running")),
        (None, " Change-Over ", ("Change-Over", "setup")),
        (None, "planned stop", ("planned stop", "planned_stop")),
        (None, "Maintenance", ("Maintenance", "planned_stop")),
        (None, "fault", ("fault", "down")),
        (None, "offline", ("offline", "offline")),
        (None, "online", ("online", "unknown")),
    ],
)
def test_packml_codes_and_common_words_are_classified(code, text, expected) -> None:
    assert StateTable().classify(code, text) == expected


def test_machinery_scheme_numbers_its_states_otherwise() -> None:
    machinery = StateTable.of("machinery")
    assert machinery.classify(3, None) == ("Executing", "running")
    assert machinery.classify(1, None) == ("OutOfService", "down")
    assert machinery.classify(0, None) == ("NotAvailable", "offline")
    assert machinery.classify(6, None) is None  # Execute is PackML's number, not Machinery's
    assert StateTable().classify(3, None) == ("Starting", "idle")


def test_a_csv_file_adds_the_plants_codes_and_words(tmp_path) -> None:
    path = tmp_path / "states.csv"
    path.write_text("code_or_word,category\n101,setup\nWarm-up,idle\n11,planned_stop\n# note\n")
    table = load_states(path)
    assert table.classify(101, None) == ("101", "setup")
    assert table.classify(None, "warm up") == ("warm up", "idle")
    assert table.classify(11, None) == ("Held", "planned_stop")  # PackML name, plant's category
    assert table.classify(6, None) == ("Execute", "running")  # the rest of PackML stays


def test_a_toml_file_can_start_from_the_machinery_scheme(tmp_path) -> None:
    path = tmp_path / "states.toml"
    path.write_text('base = "machinery"\n[states]\n"7" = "down"\n"Rüsten" = "setup"\n')
    table = load_states(path)
    assert table.classify(3, None) == ("Executing", "running")
    assert table.classify(7, None) == ("7", "down")
    assert table.classify(None, "RÜSTEN") == ("RÜSTEN", "setup")
    assert load_states("machinery").classify(2, None) == ("NotExecuting", "idle")


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("s.csv", "101,working\n", "line 1: category 'working' is not one of running"),
        ("s.csv", "101\n", "line 1: expected code_or_word,category"),
        ("s.toml", "states = [", "not TOML"),
        ("s.toml", 'base = "isa95"\n', "base must be packml or machinery"),
        ("s.csv", "---,idle\n", "'---' is no code or word"),
    ],
)
def test_a_bad_states_file_names_the_file_and_the_line(tmp_path, name, text, message) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(StatesFileError, match=message) as e:
        load_states(path)
    assert str(path) in str(e.value)


def test_a_missing_states_file_is_an_error_naming_it(tmp_path) -> None:
    with pytest.raises(StatesFileError, match="cannot read it"):
        load_states(tmp_path / "nope.csv")


# -- checks ----------------------------------------------------------------------------------


HOSTILE = [
    (("M 1", "state", t(0), 6.0, None), "machine_id M 1 is not an id"),
    ((None, "state", t(0), 6.0, None), "machine_id missing"),
    (("M" * 200, "state", t(0), 6.0, None), "longer than 128 characters"),
    (("M1", "temperature", t(0), 6.0, None), "signal temperature is not one of state"),
    (("M1", None, t(0), 6.0, None), "signal (missing) is not one of"),
    (("M1", "state", None, 6.0, None), "timestamp missing"),
    (("M1", "state", datetime(1960, 1, 1, tzinfo=UTC), 6.0, None), "is before 1970"),
    (("M1", "state", NOW + timedelta(hours=1), 6.0, None), "in the future"),
    (("M1", "good_count", t(0), float("nan"), None), "good_count value is NaN"),
    (("M1", "good_count", t(0), float("inf"), None), "good_count value is infinite"),
    (("M1", "scrap_count", t(0), -3.0, None), "scrap_count -3.0 is negative"),
    (("M1", "good_count", t(0), 2.5, None), "good_count 2.5 is not a whole number"),
    (("M1", "good_count", t(0), 1e300, None), "is beyond 2^53"),
    (("M1", "good_count", t(0), None, None), "good_count value missing"),
    (("M1", "state", t(0), None, None), "state has neither code nor text"),
    (("M1", "state", t(0), 6.5, None), "state code 6.5 is not a whole number"),
    (("M1", "state", t(0), 42.0, None), "state code 42 is not in the packml table"),
    (("M1", "state", t(0), None, "dancing"), "state word dancing is not known"),
    (("M1", "state", t(0), None, "x" * 500), "longer than 64 characters"),
    (("M1", "state", t(0), None, "\x00\x01"), "is not known"),
]


@pytest.mark.parametrize(("row", "reason"), HOSTILE, ids=[r for _, r in HOSTILE])
def test_a_hostile_signal_is_a_dead_letter_naming_the_rule_and_the_rest_goes_on(
    row, reason
) -> None:
    good = ("M1", "state", t(1), 6.0, None)
    result = check_signals(signals(good, row, good), ReadingRules(), now=NOW)
    assert result.ok.height == 2 and result.ok["category"].to_list() == ["running"] * 2
    assert result.dead.height == 1
    dead = result.dead.row(0, named=True)
    assert reason in dead["reason"] and dead["source"] == "signals"
    assert dead["sensor"] == (row[1] or None if row[1] is None else row[1][:256])
    assert len(dead["raw"]) <= 4200


def test_a_machine_the_catalogue_does_not_know_is_a_dead_letter() -> None:
    rows = signals(("M1", "state", t(0), 6.0, None), ("M9", "good_count", t(0), 3.0, None))
    result = check_signals(rows, ReadingRules(), catalogue=Catalogue(frozenset({"M1"})), now=NOW)
    assert result.ok["machine_id"].to_list() == ["M1"]
    assert result.dead["reason"].to_list() == ["unknown machine M9"]


def test_a_frame_of_the_wrong_types_or_columns_is_dead_letters_not_an_exception() -> None:
    wrong = pl.DataFrame(
        {
            "machine_id": [1, 2],
            "signal": ["state", "good_count"],
            "ts": ["yesterday", "today"],  # no time
            "value": ["six", "7"],
        }
    )
    result = check_signals(wrong, ReadingRules(), now=NOW)
    assert result.ok.height == 0
    assert result.dead["reason"].to_list() == ["timestamp missing"] * 2
    naive = signals(("M1", "state", t(0), 6.0, None)).with_columns(
        pl.col("ts").dt.replace_time_zone(None)
    )
    assert check_signals(naive, ReadingRules(), now=NOW).dead["reason"].to_list() == [
        "timestamp missing"
    ]


# -- state changes ---------------------------------------------------------------------------


def test_repeated_samples_are_one_row_per_change() -> None:
    ok = checked(
        ("M1", "state", t(0), 4.0, None),
        ("M1", "state", t(1), 4.0, None),
        ("M1", "state", t(2), 6.0, None),
        ("M2", "state", t(2), None, "idle"),
        ("M1", "state", t(3), 6.0, None),
        ("M1", "state", t(4), 9.0, None),
        ("M2", "state", t(5), None, "IDLE"),  # another spelling, another state name
    )
    tracker = SignalTracker()
    rows = tracker.push(ok).states
    assert rows.select("machine_id", "since", "state", "category").rows() == [
        ("M1", t(0), "Idle", "idle"),
        ("M1", t(2), "Execute", "running"),
        ("M1", t(4), "Aborted", "down"),
        ("M2", t(2), "idle", "idle"),
        ("M2", t(5), "IDLE", "idle"),
    ]
    # the next batch continues from the last state: still Aborted adds nothing
    more = tracker.push(checked(("M1", "state", t(6), 9.0, None), ("M1", "state", t(7), 6.0, None)))
    assert more.states.select("since", "state").rows() == [(t(7), "Execute")]


def test_a_replayed_batch_adds_nothing_and_a_resumed_tracker_gives_the_same_rows() -> None:
    first = checked(("M1", "state", t(0), 4.0, None), ("M1", "good_count", t(0), 5.0, None))
    second = checked(
        ("M1", "state", t(10), 6.0, None),
        ("M1", "good_count", t(10), 8.0, None),
        ("M1", "good_count", t(20), 12.0, None),
    )
    tracker = SignalTracker()
    tracker.push(first)
    snapshot = pickle.dumps(tracker)
    once = tracker.push(second)
    again = tracker.push(second)  # at-least-once: the same batch once more
    assert again.states is None and again.counts is None and again.dead is None
    resumed = pickle.loads(snapshot).push(second)  # recovery: from the snapshot, replayed
    assert resumed.states.equals(once.states) and resumed.counts.equals(once.counts)
    assert once.counts["parts"].to_list() == [3, 4]


def test_a_late_change_is_placed_at_its_time_and_one_too_late_is_a_dead_letter() -> None:
    tracker = SignalTracker(history=3)
    tracker.push(checked(*(("M1", "state", t(10 * i), 4.0 + 2 * (i % 2), None) for i in range(5))))
    # changes kept: t(20) Idle, t(30) Execute, t(40) Idle; t(25) Idle repeats what held then
    late = tracker.push(
        checked(
            ("M1", "state", t(25), 4.0, None),
            ("M1", "state", t(35), 9.0, None),  # an abort nobody saw in time: a change
            ("M1", "state", t(5), 9.0, None),  # before the kept history
        )
    )
    assert late.states.select("since", "state").rows() == [(t(35), "Aborted")]
    assert late.dead.height == 1 and "older than the last 3 state changes" in late.dead["reason"][0]


def test_the_tracker_keeps_a_bounded_number_of_machines() -> None:
    tracker = SignalTracker(max_machines=2)
    rows = tracker.push(
        checked(
            *((f"M{i}", "state", t(0), 6.0, None) for i in range(3)),
            *((f"M{i}", "good_count", t(0), 1.0, None) for i in range(3)),
        )
    )
    assert rows.states["machine_id"].to_list() == ["M0", "M1"]
    assert rows.counts["machine_id"].to_list() == ["M0", "M1"]
    assert rows.dead["machine_id"].to_list() == ["M2", "M2"]
    assert rows.dead["reason"].str.starts_with("too many machines").all()


# -- part counts ------------------------------------------------------------------------------


def test_a_counter_reset_starts_a_new_base_and_never_counts_negative_parts() -> None:
    rows = (
        SignalTracker()
        .push(
            checked(
                ("M1", "good_count", t(0), 100.0, None),
                ("M1", "good_count", t(10), 104.0, None),
                ("M1", "good_count", t(15), 104.0, None),  # no new part: no row
                ("M1", "good_count", t(20), 2.0, None),  # PLC restart: counted from 0 again
                ("M1", "good_count", t(30), 5.0, None),
                ("M1", "scrap_count", t(30), 1.0, None),
            )
        )
        .counts
    )
    assert rows.select("signal", "ts", "counter", "parts", "reset").rows() == [
        ("good_count", t(0), 100, 0, False),
        ("good_count", t(10), 104, 4, False),
        ("good_count", t(20), 2, 2, True),
        ("good_count", t(30), 5, 3, False),
        ("scrap_count", t(30), 1, 0, False),
    ]
    assert rows["parts"].min() >= 0 and rows["parts"].sum() == 9


def test_a_late_counter_sample_adds_nothing_unless_it_contradicts_the_newer_one() -> None:
    tracker = SignalTracker()
    tracker.push(
        checked(("M1", "good_count", t(0), 10.0, None), ("M1", "good_count", t(20), 20.0, None))
    )
    late = tracker.push(
        checked(("M1", "good_count", t(10), 15.0, None), ("M1", "good_count", t(15), 25.0, None))
    )
    assert late.counts is None
    assert late.dead["reason"].to_list() == [
        f"late: good_count 25 at {t(15).isoformat()} is above the newer sample 20 at "
        f"{t(20).isoformat()}"
    ]


def test_the_checked_schema_is_what_the_tracker_reads() -> None:
    assert list(checked(("M1", "state", t(0), 6.0, None)).schema.items()) == list(
        CHECKED_SCHEMA.items()
    )


# -- the flow --------------------------------------------------------------------------------


def _items(plant) -> list:
    """Reading frames of 20 minutes and, between them, the machines' states and counters (with
    a hostile row, a repeat of a whole signal batch, and a counter reset)."""
    items, step = [], timedelta(minutes=1)
    for i in range(20):
        a = T0 + i * step
        items.append(plant.readings(a, a + step))
        rows = [
            ("M01", "state", a, 6.0 if i < 12 else 11.0, None),
            ("M01", "good_count", a + timedelta(seconds=30), float(10 * i if i < 15 else i), None),
            ("M02", "state", a, None, "running" if i % 10 else "setup"),
        ]
        if i == 3:
            rows.append(("M01", "state", a, None, "dancing"))
        items.append(Signals(signals(*rows)))
        if i == 5:
            items.append(items[-1])  # a source that delivered one batch twice
    return items


def test_the_flow_stores_state_changes_part_counts_and_signal_dead_letters(tmp_path) -> None:
    plant = build_plant(3, start=T0, horizon=timedelta(minutes=30), seed=2, faults=())
    plant.write_context(tmp_path / "erp")
    settings = PipelineSettings(rules=ReadingRules(max_future=timedelta(days=36500)))
    db_path = tmp_path / "f.duckdb"
    run_main(
        build_flow(TestingSource(_items(plant)), ContextStore(tmp_path / "erp"), db_path, settings)
    )
    db = Database(db_path)
    states = db.query("SELECT machine_id, since, state, category FROM machine_states ORDER BY 1, 2")
    assert states.rows() == [
        ("M01", T0, "Execute", "running"),
        ("M01", T0 + timedelta(minutes=12), "Held", "down"),
        ("M02", T0, "setup", "setup"),
        ("M02", T0 + timedelta(minutes=1), "running", "running"),
        ("M02", T0 + timedelta(minutes=10), "setup", "setup"),
        ("M02", T0 + timedelta(minutes=11), "running", "running"),
    ]
    counts = db.query(
        "SELECT sum(parts) AS parts, count(*) FILTER (WHERE reset) AS resets FROM part_counts"
    )
    # 0, 10, ..., 140 then a reset to 15 and 16 .. 19: 140 + 15 + 4 parts
    assert counts.row(0) == (159, 1)
    dead = db.query("SELECT source, machine_id, reason FROM dead_letters WHERE source = 'signals'")
    assert dead.rows() == [
        ("signals", "M01", "state word dancing is not known (map it with --states FILE)")
    ]
    # the readings went their own way: 20 minutes of features of every machine
    features = db.query("SELECT count(DISTINCT machine_id) AS m, count(*) AS n FROM features")
    assert features["m"][0] == 3 and features["n"][0] > 0


def test_the_flow_classifies_with_the_plants_own_table(tmp_path) -> None:
    plant = build_plant(1, start=T0, horizon=timedelta(minutes=30), seed=2, faults=())
    plant.write_context(tmp_path / "erp")
    (tmp_path / "states.csv").write_text("101,setup\n")
    settings = PipelineSettings(
        rules=ReadingRules(max_future=timedelta(days=36500)),
        states=load_states(tmp_path / "states.csv"),
    )
    items = [
        plant.readings(T0, T0 + timedelta(minutes=1)),
        Signals(signals(("M01", "state", T0, 101.0, None), ("M01", "state", t(60), 6.0, None))),
    ]
    db_path = tmp_path / "f.duckdb"
    run_main(build_flow(TestingSource(items), ContextStore(tmp_path / "erp"), db_path, settings))
    rows = Database(db_path).query("SELECT state, category FROM machine_states ORDER BY since")
    assert rows.rows() == [("101", "setup"), ("Execute", "running")]


# -- the command line ------------------------------------------------------------------------


def test_run_refuses_a_bad_states_file_before_it_starts(tmp_path) -> None:
    from typer.testing import CliRunner

    from floorsight.cli import app

    bad = tmp_path / "states.csv"
    bad.write_text("code_or_word,category\n101,working\n")
    (tmp_path / "r.csv").write_text("machine_id,sensor,ts,value\n")
    args = ["run", "--history", str(tmp_path / "r.csv"), "--context", str(tmp_path)]
    result = CliRunner().invoke(app, [*args, "--states", str(bad), "--db", str(tmp_path / "x")])
    assert result.exit_code == 2
    # the message sits in a rich panel whose width follows the terminal: drop its borders
    flat = " ".join(result.output.replace("│", " ").split())
    assert "line 2: category 'working' is not one of running" in flat
    assert not (tmp_path / "x").exists()


def test_run_passes_its_states_file_on_to_every_process() -> None:
    from pathlib import Path

    from floorsight.runner import RunConfig

    cfg = RunConfig(history=None, context=Path("erp"), db=Path("f.duckdb"), mqtt="h:1883")
    assert "--states" not in cfg.args()
    cfg.states = "plant-states.toml"
    assert cfg.args()[-2:] == ["--states", "plant-states.toml"]


def test_a_run_aborted_and_resumed_from_recovery_writes_what_an_unbroken_run_writes(
    tmp_path,
) -> None:
    from bytewax.recovery import RecoveryConfig, init_db_dir

    plant = build_plant(2, start=T0, horizon=timedelta(minutes=30), seed=2, faults=())
    plant.write_context(tmp_path / "erp")
    batches = [
        Signals(plant.signals(T0 + i * timedelta(minutes=2), T0 + (i + 1) * timedelta(minutes=2)))
        for i in range(10)
    ]
    batches[0] = Signals(plant.signals(T0, T0 + timedelta(minutes=2), initial=True))
    settings = PipelineSettings(rules=ReadingRules(max_future=timedelta(days=36500)))

    def tables(db_path) -> tuple[pl.DataFrame, pl.DataFrame]:
        db = Database(db_path)
        return (
            db.query("SELECT * FROM machine_states ORDER BY ALL"),
            db.query("SELECT * FROM part_counts ORDER BY ALL"),
        )

    clean = tmp_path / "clean.duckdb"
    run_main(build_flow(TestingSource(batches), ContextStore(tmp_path / "erp"), clean, settings))
    recovery = tmp_path / "recovery"
    recovery.mkdir()
    init_db_dir(recovery, 1)
    resumed = tmp_path / "resumed.duckdb"
    items = [*batches[:6], TestingSource.ABORT(), *batches[6:]]

    def run() -> None:
        flow = build_flow(TestingSource(items), ContextStore(tmp_path / "erp"), resumed, settings)
        run_main(flow, epoch_interval=timedelta(0), recovery_config=RecoveryConfig(str(recovery)))

    run()  # stops at the abort, its last snapshot in the recovery store
    halfway = tables(resumed)
    run()
    expected = tables(clean)
    assert halfway[1].height < expected[1].height  # the abort stopped it part of the way
    assert tables(resumed)[0].equals(expected[0]) and tables(resumed)[1].equals(expected[1])
    assert expected[1]["parts"].sum() > 20


# -- any input ---------------------------------------------------------------------------------

_ids = st.one_of(st.none(), st.sampled_from(["M1", "M2", "M 3", ""]), st.text(max_size=200))
_kinds = st.one_of(st.none(), st.sampled_from(["state", "good_count", "scrap_count"]), st.text())
_times = st.one_of(
    st.none(),
    st.datetimes(
        min_value=datetime(1900, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)
    ),
)
_values = st.one_of(
    st.none(), st.floats(allow_nan=True, allow_infinity=True), st.integers(-5, 30).map(float)
)
_texts = st.one_of(st.none(), st.sampled_from(["running", "Held", "Planned Stop", "x"]), st.text())


@given(st.lists(st.tuples(_ids, _kinds, _times, _values, _texts), max_size=40))
@settings(max_examples=150, deadline=None)
def test_any_signal_batch_is_classified_or_dead_letters_and_never_raises(rows) -> None:
    batch = signals(*rows)
    result = check_signals(batch, ReadingRules(), now=NOW)
    dead = 0 if result.dead is None else result.dead.height
    assert result.ok.height + dead == len(rows)  # nothing lost, nothing doubled
    if result.dead is not None:
        assert (
            result.dead["reason"].is_not_null().all() and (result.dead["source"] == "signals").all()
        )
    tracked = SignalTracker().push(result.ok)
    if tracked.counts is not None:
        assert (tracked.counts["parts"] >= 0).all()
    if tracked.states is not None:
        assert tracked.states["category"].is_not_null().all()
