"""Machine signals from the floor: MES states and good/scrap part counters, checked and stored.

Sources emit :class:`floorsight.records.Signals` beside their readings (an OPC-UA node, an MQTT
topic or a Sparkplug birth/death mapped to ``state``, ``good_count`` or ``scrap_count``). This
module is the plain library behind the flow's signal branch:

- :class:`StateTable` classifies a state, a numeric code or a word, into a
  :class:`StateCategory`. Codes follow one scheme, PackML (ISA-TR88.00.02 state numbers, the
  default) or OPC UA for Machinery (``MachineryItemState``), since the two number their states
  differently; words (``running``, ``changeover``, ``fault``, ``planned_stop`` ...) are
  understood in either. :func:`load_states` reads a plant's own codes and words from a small
  CSV or TOML file (``floorsight run --states FILE``) on top of a scheme.
- :func:`check_signals` splits a batch into valid signal rows (classified) and dead letters
  (source ``signals``), each with the reason naming the rule it broke: an id outside the
  project's id rule or unknown to the context's catalogue, a kind that is not a signal, a time
  outside the bounds of :class:`~floorsight.pipelines.validate.ReadingRules`, a value that is no
  finite number, a counter that is negative or not whole, a state code or word no table knows.
- :class:`SignalTracker` (one per shard, the flow's state) turns the valid rows into
  ``machine_states`` rows, one per state *change* (keyed by machine and ``since``), and
  ``part_counts`` rows, the parts each counter sample adds (a counter that goes down, a PLC
  restart, starts a new base: the parts are its new value, never negative).

Both outputs are idempotent under Bytewax's at-least-once replay: the tracker is snapshotted
with the rest of the flow's state, so replayed signals give the same rows and the same keys.
"""

from __future__ import annotations

import bisect
import csv
import io
import re
import tomllib
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from pathlib import Path

import polars as pl

from floorsight.pipelines.tables import MACHINE_STATES, PART_COUNTS
from floorsight.pipelines.validate import (
    ID_PATTERN,
    Catalogue,
    Checked,
    ReadingRules,
    dead_letters,
    time_checks,
)
from floorsight.records import SIGNAL_SCHEMA, TIMESTAMP, SignalKind, utc_now

SOURCE = "signals"
#: a counter beyond this is no plant counter (and floats stop being exact integers)
MAX_COUNT = 2.0**53
#: a state code beyond this is no state code (Int32 is the widest OPC-UA enumeration)
MAX_CODE = 2.0**31
#: a state word longer than this is refused
MAX_WORD_CHARS = 64
#: state changes kept per machine to place late samples (and recognise replayed ones)
HISTORY = 256
#: machines one tracker (one shard) keeps; a signal of a machine beyond them is a dead letter
#: (without a machine catalogue in the context, any valid id is a new machine)
MAX_MACHINES = 100_000

#: Columns of a checked signal batch: the signal columns, the state's name and category.
CHECKED_SCHEMA: dict[str, pl.DataType] = {
    **SIGNAL_SCHEMA,
    "state": pl.String(),
    "category": pl.String(),
}


class StateCategory(StrEnum):
    """What a machine's state means for OEE."""

    RUNNING = "running"  # producing: the only state that counts as run time
    IDLE = "idle"  # ready but not producing (no order, starved, blocked, stopped)
    SETUP = "setup"  # changeover between products
    DOWN = "down"  # fault, alarm, breakdown, repair: unplanned loss
    PLANNED_STOP = "planned_stop"  # planned maintenance, breaks: not planned production time
    OFFLINE = "offline"  # not reachable or powered off
    UNKNOWN = "unknown"  # connected, state not known (a Sparkplug birth says "online")


C = StateCategory

#: PackML state numbers (ISA-TR88.00.02-2015, ``StateCurrent``) -> (name, category). Suspended
#: is an external cause (starved, blocked: idle); Held an internal one (jam, operator: down).
PACKML: dict[int, tuple[str, StateCategory]] = {
    0: ("Undefined", C.UNKNOWN),
    1: ("Clearing", C.DOWN),
    2: ("Stopped", C.IDLE),
    3: ("Starting", C.IDLE),
    4: ("Idle", C.IDLE),
    5: ("Suspended", C.IDLE),
    6: ("Execute", C.RUNNING),
    7: ("Stopping", C.IDLE),
    8: ("Aborting", C.DOWN),
    9: ("Aborted", C.DOWN),
    10: ("Holding", C.DOWN),
    11: ("Held", C.DOWN),
    12: ("Unholding", C.DOWN),
    13: ("Suspending", C.IDLE),
    14: ("Unsuspending", C.IDLE),
    15: ("Resetting", C.IDLE),
    16: ("Completing", C.IDLE),
    17: ("Complete", C.IDLE),
}

#: OPC UA for Machinery (OPC 40001-1) ``MachineryItemState`` -> (name, category).
MACHINERY: dict[int, tuple[str, StateCategory]] = {
    0: ("NotAvailable", C.OFFLINE),
    1: ("OutOfService", C.DOWN),
    2: ("NotExecuting", C.IDLE),
    3: ("Executing", C.RUNNING),
}

SCHEMES = {"packml": PACKML, "machinery": MACHINERY}

_WORDS: dict[StateCategory, tuple[str, ...]] = {
    C.RUNNING: (
        "running",
        "run",
        "production",
        "producing",
        "execute",
        "executing",
        "automatic",
        "auto",
        "started",
        "busy",
    ),
    C.IDLE: (
        "idle",
        "stopped",
        "stop",
        "ready",
        "waiting",
        "starved",
        "blocked",
        "suspended",
        "notexecuting",
        "complete",
        "completed",
        "standby",
        "paused",
        "noorder",
    ),
    C.SETUP: ("setup", "changeover", "settingup", "retooling"),
    C.DOWN: (
        "down",
        "fault",
        "faulted",
        "error",
        "alarm",
        "breakdown",
        "failure",
        "failed",
        "aborted",
        "aborting",
        "held",
        "outofservice",
        "repair",
        "estop",
        "emergencystop",
    ),
    C.PLANNED_STOP: (
        "plannedstop",
        "planneddowntime",
        "maintenance",
        "plannedmaintenance",
        "break",
        "cleaning",
    ),
    C.OFFLINE: ("offline", "disconnected", "notavailable", "off", "poweredoff"),
    C.UNKNOWN: ("unknown", "undefined", "online"),
}
#: Words every table understands, normalised (:func:`normalise_word`).
WORDS: dict[str, StateCategory] = {w: cat for cat, words in _WORDS.items() for w in words}

#: what a word's key leaves out: blanks, ``_ - . /`` and control characters
_NOT_ALNUM = r"[\s_\-./\x00-\x1f\x7f]"
_ID_RE = f"^{ID_PATTERN}$"


class StatesFileError(ValueError):
    """A ``--states`` file that cannot be read: its path, line and what is wrong."""


def normalise_word(word: str) -> str:
    """A state word as the tables key it: lower case without blanks and ``_ - . /``, so
    ``"Planned Stop"`` and ``planned_stop`` are one."""
    return re.sub(_NOT_ALNUM, "", word.lower())


@dataclass(frozen=True)
class StateTable:
    """Codes of one scheme and words, each with its category (see :func:`load_states`).

    >>> table = StateTable.of("packml")
    >>> table.classify(6.0, None), table.classify(None, "Change-Over")
    (('Execute', 'running'), ('Change-Over', 'setup'))
    >>> table.classify(42.0, None) is None
    True
    """

    scheme: str = "packml"
    codes: dict[int, tuple[str, StateCategory]] = field(default_factory=lambda: dict(PACKML))
    words: dict[str, StateCategory] = field(default_factory=lambda: dict(WORDS))
    #: where the overrides came from (for reasons and logs)
    origin: str = ""

    @classmethod
    def of(cls, scheme: str) -> StateTable:
        if scheme not in SCHEMES:
            raise StatesFileError(f"unknown state scheme {scheme!r}: use {' or '.join(SCHEMES)}")
        return cls(scheme, dict(SCHEMES[scheme]), dict(WORDS))

    def classify(self, code: float | None, text: str | None) -> tuple[str, str] | None:
        """(name, category) of a state, or None when no table knows it."""
        if code is not None:
            found = self.codes.get(int(code)) if float(code).is_integer() else None
            return (found[0], str(found[1])) if found else None
        if text is not None:
            category = self.words.get(normalise_word(text))
            return (text.strip(), str(category)) if category else None
        return None

    def code_frame(self) -> pl.DataFrame:
        return pl.DataFrame(
            {
                "_code": list(self.codes),
                "_code_name": [n for n, _ in self.codes.values()],
                "_code_category": [str(c) for _, c in self.codes.values()],
            },
            schema={"_code": pl.Int64, "_code_name": pl.String, "_code_category": pl.String},
        )

    def word_frame(self) -> pl.DataFrame:
        return pl.DataFrame(
            {"_word": list(self.words), "_word_category": [str(c) for c in self.words.values()]},
            schema={"_word": pl.String, "_word_category": pl.String},
        )


def load_states(spec: str | Path | None) -> StateTable:
    """The state table of ``spec``: ``packml`` (default), ``machinery``, or a file.

    A file adds the plant's own codes and words, or changes the category of known ones:

    - CSV, rows ``code_or_word,category`` (a header row of exactly those names is skipped),
      on the PackML codes;
    - TOML, ``base = "packml" | "machinery"`` (optional) and a ``[states]`` table of
      ``"code_or_word" = "category"``.

    A key made of digits is a code; anything else a word. Categories: running, idle, setup,
    down, planned_stop, offline, unknown. A bad file raises :class:`StatesFileError`.
    """
    if spec is None or str(spec) in SCHEMES:
        return StateTable.of(str(spec or "packml"))
    path = Path(spec)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise StatesFileError(f"--states {path}: cannot read it ({e})") from None
    if path.suffix.lower() == ".toml":
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise StatesFileError(f"--states {path}: not TOML ({e})") from None
        base = data.get("base", "packml")
        states = data.get("states", {})
        if not isinstance(base, str) or base not in SCHEMES:
            raise StatesFileError(f"--states {path}: base must be packml or machinery: {base!r}")
        if not isinstance(states, dict):
            raise StatesFileError(f"--states {path}: [states] must be a table")
        entries = [(str(k), v, f"key {k!r}") for k, v in states.items()]
    else:
        base = "packml"
        entries = []
        for n, row in enumerate(csv.reader(io.StringIO(text)), start=1):
            cells = [c.strip() for c in row]
            if not any(cells) or cells[0].startswith("#"):
                continue
            if n == 1 and [c.lower() for c in cells] == ["code_or_word", "category"]:
                continue
            if len(cells) != 2:
                raise StatesFileError(
                    f"--states {path} line {n}: expected code_or_word,category, got {row!r}"
                )
            entries.append((cells[0], cells[1], f"line {n}"))
    table = StateTable.of(base)
    codes, words = dict(table.codes), dict(table.words)
    for raw_key, category, where in entries:
        try:
            cat = StateCategory(str(category).strip().lower())
        except ValueError:
            raise StatesFileError(
                f"--states {path} {where}: category {category!r} is not one of "
                f"{', '.join(c.value for c in StateCategory)}"
            ) from None
        key = raw_key.strip()
        if re.fullmatch(r"-?\d+", key):
            code = int(key)
            codes[code] = (codes.get(code, (key, cat))[0], cat)
        elif normalise_word(key):
            words[normalise_word(key)] = cat
        else:
            raise StatesFileError(f"--states {path} {where}: {key!r} is no code or word")
    return StateTable(base, codes, words, origin=str(path))


# ------------------------------------------------------------------------------------------
# checking a batch


def check_signals(
    batch: pl.DataFrame,
    rules: ReadingRules | None = None,
    table: StateTable | None = None,
    catalogue: Catalogue | None = None,
    now: datetime | None = None,
) -> Checked:
    """Split a signal batch into classified rows (:data:`CHECKED_SCHEMA`) and dead letters.

    Rules in order: machine id (missing, id rule, known), signal kind, timestamp (missing,
    absolute bounds, wall-clock window of ``rules``), value (a counter: present, finite, whole,
    not negative, at most 2^53; a state: a finite whole code or a word of at most 64
    characters), and the state known to ``table``.
    """
    rules = rules or ReadingRules()
    table = table or StateTable()
    now = now or utc_now()
    frame = _conform(batch)
    if frame.height == 0:
        return Checked(pl.DataFrame(schema=CHECKED_SCHEMA), None)
    mid, sig, ts, value, text = (pl.col(c) for c in ("machine_id", "signal", "ts", "value", "text"))
    is_state = sig == SignalKind.STATE.value
    is_count = sig.is_in([SignalKind.GOOD_COUNT.value, SignalKind.SCRAP_COUNT.value])
    code_ok = value.is_not_null() & value.is_finite() & (value.abs() <= MAX_CODE)
    code_ok = code_ok & (value == value.floor())
    frame = (
        frame.with_columns(
            _code=pl.when(is_state & code_ok).then(value.cast(pl.Int64)),
            _word=pl.when(is_state & value.is_null() & text.is_not_null()).then(
                text.str.to_lowercase().str.replace_all(_NOT_ALNUM, "")
            ),
        )
        .join(table.code_frame(), on="_code", how="left", maintain_order="left")
        .join(table.word_frame(), on="_word", how="left", maintain_order="left")
    )
    known = rules.known_machines
    if catalogue is not None:
        known = catalogue.machines if known is None else known & catalogue.machines
    excerpt = mid.str.slice(0, 40)
    checks: list[tuple[pl.Expr, pl.Expr]] = [
        (mid.is_null() | (mid == ""), pl.lit("machine_id missing")),
        (
            mid.str.len_chars() > 128,
            pl.format("machine_id {}... is longer than 128 characters", excerpt),
        ),
        (
            ~mid.str.contains(_ID_RE),
            pl.format(
                "machine_id {} is not an id: only A-Z a-z 0-9 and _ . : - are allowed, starting "
                "with a letter or digit",
                excerpt.str.replace_all(r"[\x00-\x1f\x7f]", "\ufffd"),
            ),
        ),
    ]
    if known is not None:
        checks.append((~mid.is_in(list(known)), pl.format("unknown machine {}", mid)))
    checks += [
        (
            sig.is_null() | ~(is_state | is_count),
            pl.format(
                "signal {} is not one of state, good_count, scrap_count",
                sig.str.slice(0, 40).fill_null("(missing)"),
            ),
        ),
        *time_checks(ts, rules, now),
    ]
    checks += [
        (is_count & value.is_null(), pl.format("{} value missing", sig)),
        (value.is_nan(), pl.format("{} value is NaN", sig)),
        (value.is_infinite(), pl.format("{} value is infinite", sig)),
        (is_count & (value < 0), pl.format("{} {} is negative", sig, value)),
        (is_count & (value != value.floor()), pl.format("{} {} is not a whole number", sig, value)),
        (is_count & (value > MAX_COUNT), pl.format("{} {} is beyond 2^53", sig, value)),
        (is_state & value.is_null() & text.is_null(), pl.lit("state has neither code nor text")),
        (
            is_state & value.is_not_null() & ~code_ok,
            pl.format("state code {} is not a whole number within ±2^31", value),
        ),
        (
            is_state & value.is_null() & (text.str.len_chars() > MAX_WORD_CHARS),
            pl.format(
                "state text {}... is longer than {} characters",
                text.str.slice(0, 40),
                pl.lit(MAX_WORD_CHARS),
            ),
        ),
        (
            is_state & pl.col("_code").is_not_null() & pl.col("_code_category").is_null(),
            pl.format(
                "state code {} is not in the {} table{} (map it with --states FILE)",
                pl.col("_code"),
                pl.lit(table.scheme),
                pl.lit(f" or {table.origin}" if table.origin else ""),
            ),
        ),
        (
            is_state & pl.col("_word").is_not_null() & pl.col("_word_category").is_null(),
            pl.format(
                "state word {} is not known (map it with --states FILE)",
                text.str.slice(0, 40).str.replace_all(r"[\x00-\x1f\x7f]", "\ufffd"),
            ),
        ),
    ]
    reason = pl.when(checks[0][0]).then(checks[0][1])
    for cond, why in checks[1:]:
        reason = reason.when(cond).then(why)
    flagged = frame.with_columns(
        _reason=reason.otherwise(None),
        state=pl.when(is_state).then(pl.coalesce(pl.col("_code_name"), text.str.strip_chars())),
        category=pl.when(is_state).then(
            pl.coalesce(pl.col("_code_category"), pl.col("_word_category"))
        ),
    )
    bad = flagged["_reason"].is_not_null()
    ok = flagged.filter(~bad).select(list(CHECKED_SCHEMA))
    if not bad.any():
        return Checked(ok, None)
    rows = flagged.filter(bad).select(
        "machine_id", pl.col("signal").alias("sensor"), "ts", "value", "text", "_reason"
    )
    return Checked(ok, dead_letters(rows, SOURCE, reason_col="_reason"))


def _conform(batch: pl.DataFrame) -> pl.DataFrame:
    """``batch`` with exactly the signal columns and types (missing ones null, casts that fail
    null, so the checks name them)."""
    cols = []
    for name, dtype in SIGNAL_SCHEMA.items():
        missing = pl.lit(None, dtype=dtype).alias(name)
        if name not in batch.columns:
            cols.append(missing)
        elif name == "ts" and batch.schema[name] != TIMESTAMP:
            col = pl.col(name)
            if isinstance(batch.schema[name], pl.Datetime) and batch.schema[name].time_zone:
                cols.append(col.dt.convert_time_zone("UTC").cast(TIMESTAMP, strict=False))
            else:  # a naive or non-time column: no guessing of a zone
                cols.append(missing)
        else:
            cast = pl.col(name).cast(dtype, strict=False)
            try:  # a column no cast can read (a list, bytes that are no UTF-8) is missing
                batch.head(0).select(cast)
                batch.select(cast)
            except pl.exceptions.PolarsError:
                cast = missing
            cols.append(cast)
    # literals broadcast: a frame without rows stays one
    return batch.select(cols).head(batch.height)


# ------------------------------------------------------------------------------------------
# state changes and part counts


@dataclass(frozen=True, slots=True)
class SignalRows:
    """What a batch of checked signals adds: state changes, counted parts, dead letters."""

    states: pl.DataFrame | None
    counts: pl.DataFrame | None
    dead: pl.DataFrame | None


STATE_ROW_SCHEMA = MACHINE_STATES.polars_schema
COUNT_ROW_SCHEMA = PART_COUNTS.polars_schema


class SignalTracker:
    """One shard's machines: the recent state changes and the last sample of each counter.

    ``push`` returns the rows a batch adds. A state sample that equals the state in force at
    its time adds nothing (so replayed and repeated samples add nothing); one that differs is a
    change at its time, also when it arrives late (placed among the last ``history`` changes;
    older than those, it is a dead letter). A counter sample adds ``value - previous`` parts,
    or ``value`` after a reset (the counter went down); the first sample of a counter is its
    base (0 parts). A counter sample behind the counter's newest one adds nothing (its parts are
    in the newer, cumulative count), unless it is above it: that is a dead letter.

    >>> from datetime import UTC, datetime
    >>> t = lambda s: datetime(2026, 1, 5, 6, 0, s, tzinfo=UTC)
    >>> rows = SignalTracker().push(pl.DataFrame(
    ...     {"machine_id": ["M1"] * 4, "signal": ["good_count"] * 4,
    ...      "ts": [t(0), t(1), t(2), t(3)], "value": [10.0, 12.0, 3.0, 5.0], "text": [None] * 4,
    ...      "state": [None] * 4, "category": [None] * 4}, schema=CHECKED_SCHEMA))
    >>> rows.counts["parts"].to_list(), rows.counts["reset"].to_list()
    ([0, 2, 3, 2], [False, False, True, False])
    """

    def __init__(self, history: int = HISTORY, max_machines: int = MAX_MACHINES) -> None:
        self.history = history
        self.max_machines = max_machines
        self._reset()

    def _reset(self) -> None:
        #: machine -> [(since, (state, category)), ...] sorted, the last ``history`` changes
        self._changes: dict[str, list[tuple[datetime, tuple[str, str]]]] = {}
        #: machines whose oldest changes were dropped (a sample before the kept ones is late)
        self._trimmed: set[str] = set()
        #: (machine, signal) -> (ts, counter) of the newest sample
        self._counters: dict[tuple[str, str], tuple[datetime, int]] = {}
        #: every machine tracked (at most ``max_machines``)
        self._machines: set[str] = set()
        #: samples that repeated what was known (replays, polling)
        self.repeated = 0

    def push(self, checked: pl.DataFrame) -> SignalRows:
        frame = checked.sort("machine_id", "signal", "ts", maintain_order=True)
        states = frame.filter(pl.col("signal") == SignalKind.STATE.value)
        counts = frame.filter(pl.col("signal") != SignalKind.STATE.value)
        state_rows, dead = self._states(states)
        count_rows, count_dead = self._counts(counts)
        dead += count_dead
        return SignalRows(
            pl.DataFrame(state_rows, schema=STATE_ROW_SCHEMA, orient="row") if state_rows else None,
            pl.DataFrame(count_rows, schema=COUNT_ROW_SCHEMA, orient="row") if count_rows else None,
            dead_letters(
                pl.DataFrame(
                    dead,
                    schema={
                        "machine_id": pl.String,
                        "sensor": pl.String,
                        "ts": TIMESTAMP,
                        "value": pl.Float64,
                        "text": pl.String,
                        "_reason": pl.String,
                    },
                    orient="row",
                ),
                SOURCE,
                reason_col="_reason",
            )
            if dead
            else None,
        )

    def _states(self, states: pl.DataFrame) -> tuple[list[tuple], list[tuple]]:
        if states.height == 0:
            return [], []
        # a run of equal samples of a machine is one sample (polling sources repeat the state)
        key = pl.struct("state", "category")
        first = states.filter((key != key.shift(1).over("machine_id")).fill_null(True))
        out, dead = [], []
        for m, ts, code, text, state, category in first.select(
            "machine_id", "ts", "value", "text", "state", "category"
        ).iter_rows():
            if not self._admit(m):
                dead.append((m, SignalKind.STATE.value, ts, code, text, self._too_many()))
                continue
            changes = self._changes.setdefault(m, [])
            k = (state, category)
            i = bisect.bisect_right(changes, ts, key=lambda c: c[0]) - 1
            if i >= 0 and changes[i][1] == k:
                self.repeated += 1
                continue
            if i < 0 and m in self._trimmed:
                dead.append(
                    (
                        m,
                        SignalKind.STATE.value,
                        ts,
                        code,
                        text,
                        f"late: state sample at {ts.isoformat()} is older than the last "
                        f"{self.history} state changes kept for {m} (from "
                        f"{changes[0][0].isoformat()})",
                    )
                )
                continue
            if i >= 0 and changes[i][0] == ts:
                changes[i] = (ts, k)  # two states at one time: the later sample wins
            else:
                changes.insert(i + 1, (ts, k))
            if len(changes) > self.history:
                del changes[: len(changes) - self.history]
                self._trimmed.add(m)
            out.append((m, ts, code, text, state, category))
        return out, dead

    def _admit(self, machine_id: str) -> bool:
        """Whether the machine is tracked, or can be (within ``max_machines``)."""
        if machine_id in self._machines:
            return True
        if len(self._machines) >= self.max_machines:
            return False
        self._machines.add(machine_id)
        return True

    def _too_many(self) -> str:
        return (
            f"too many machines: the signals of {self.max_machines} machines are tracked already "
            "(give the context a machines table, so unknown ids are refused)"
        )

    def _counts(self, counts: pl.DataFrame) -> tuple[list[tuple], list[tuple]]:
        out, dead = [], []
        for m, signal, ts, value in counts.select(
            "machine_id", "signal", "ts", "value"
        ).iter_rows():
            counter = int(value)
            last = self._counters.get((m, signal))
            if last is None and not self._admit(m):
                dead.append((m, signal, ts, value, None, self._too_many()))
                continue
            if last is None:
                out.append((m, signal, ts, counter, 0, False))
            elif ts > last[0]:
                reset = counter < last[1]
                parts = counter if reset else counter - last[1]
                if parts or reset:
                    out.append((m, signal, ts, counter, parts, reset))
            elif counter <= last[1]:
                # behind the newest sample and not above it: its parts are in the newer count
                self.repeated += 1
                continue
            else:
                dead.append(
                    (
                        m,
                        signal,
                        ts,
                        value,
                        None,
                        f"late: {signal} {counter} at {ts.isoformat()} is above the newer "
                        f"sample {last[1]} at {last[0].isoformat()}",
                    )
                )
                continue
            self._counters[(m, signal)] = (ts, counter)
        return out, dead
