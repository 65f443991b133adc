"""Every registered per-machine model against the protocol (like River's ``test_estimators.py``).

One suite parametrised over ``models.registry.MODELS``: a model that fails it cannot ship. The
data is a simulated plant: an in-control stretch (no faults) for calibration and a stretch with
every fault kind for the rest, as window segments with their coverage marked one window at a
time (so that splitting a batch changes nothing the engine does before the models).
"""

from __future__ import annotations

import dataclasses
import math
import pickle
from datetime import UTC, datetime, timedelta
from functools import cache

import polars as pl
import pytest

from floorsight.features import window_features
from floorsight.models import SCORES
from floorsight.models.base import Context, MachineModel, Maintenance, ModelOutput
from floorsight.models.context import lab_results_by_machine, spec_limits_dict
from floorsight.models.engine import MachineModels
from floorsight.models.machine import Coverage, Segment, by_machine, segments_of
from floorsight.models.registry import (
    MODELS,
    ModelSettingsError,
    build_models,
    by_name,
    check_settings,
    model_tables,
)
from floorsight.pipelines.context import SPEC_SCHEMA, ErpContext
from floorsight.simulate import PlantOptions, make_plant
from floorsight.simulators.catalog import spec_limits_frame
from floorsight.simulators.erp import lab_results

T0 = datetime(2026, 3, 2, tzinfo=UTC)
HOURS = 8
WINDOW = timedelta(seconds=10)

#: every column of the scores table
SCORE_KEYS = set(SCORES.polars_schema)


@dataclasses.dataclass(frozen=True)
class Stream:
    """One machine's segments, in time order, with the machine's context."""

    machine_id: str
    segments: tuple[Segment, ...]
    context: Context


@cache
def _streams(faults: bool) -> tuple[Stream, ...]:
    opts = PlantOptions(
        machines=2,
        start=T0,
        horizon=timedelta(hours=HOURS),
        seed=42 if faults else 43,
        sample_hz=1,
        faults_per_machine_day=20.0 if faults else 0.0,
    )
    plant = make_plant(opts)
    ctx = ErpContext(plant.work_orders_frame(), pl.DataFrame(schema=SPEC_SCHEMA))
    features = window_features(
        ctx.join(plant.readings(T0, T0 + timedelta(hours=HOURS))), WINDOW
    ).sort("window_start", maintain_order=True)
    specs = spec_limits_dict(spec_limits_frame())
    labs = lab_results_by_machine(lab_results(plant, plant.parts))
    out = []
    for machine_id, segments in sorted(by_machine(segments_of(features)).items()):
        coverage = Coverage()
        for seg in segments:  # one window at a time: independent of how models are batched
            coverage.mark([seg])
        champion = [
            seg.score_row("champion", 0.9 if i % 50 < 3 else 0.1, i % 50 < 3, "{}")
            for i, seg in enumerate(segments)
        ]
        context = Context(machine_id, specs, labs.get(machine_id, []), champion)
        out.append(Stream(machine_id, tuple(segments), context))
    return tuple(out)


def _fresh_context(stream: Stream) -> Context:
    c = stream.context
    return Context(c.machine_id, c.specs, c.labs, c.champion)


def _run(model: MachineModel, stream: Stream, batch: int) -> ModelOutput:
    """The model over the stream in batches of ``batch`` segments; outputs concatenated."""
    total = ModelOutput()
    context = _fresh_context(stream)
    segments = stream.segments
    for i in range(0, len(segments), batch):
        out = model.score_segments(list(segments[i : i + batch]), context)
        total.scores.extend(out.scores)
        for table, rows in out.tables.items():
            total.tables.setdefault(table, []).extend(rows)
    return total


def _same(a: ModelOutput, b: ModelOutput) -> None:
    assert a.scores == b.scores
    assert {t: r for t, r in a.tables.items() if r} == {t: r for t, r in b.tables.items() if r}


models = pytest.mark.parametrize("cls", MODELS, ids=lambda cls: cls.name)


def test_one_name_per_model() -> None:
    names = [cls.name for cls in MODELS]
    assert len(set(names)) == len(names)
    assert all(name.isidentifier() for name in names)
    assert by_name().keys() == set(names)
    tables = [spec.name for spec in model_tables()]
    assert len(set(tables)) == len(tables)


@models
def test_rows_carry_its_name_and_scores_in_0_1(cls: type[MachineModel]) -> None:
    for stream in _streams(True):
        out = _run(cls(), stream, 360)
        for row in out.scores:
            assert row.keys() >= SCORE_KEYS
            assert row["model"] == cls.name
            assert row["machine_id"] == stream.machine_id
            assert isinstance(row["is_anomaly"], bool)
            assert math.isfinite(row["score"]) and 0.0 <= row["score"] <= 1.0, row
        declared = {spec.name: spec for spec in cls.tables}
        for table, rows in out.tables.items():
            assert table in declared, f"{cls.name} writes {table}, which it does not declare"
            columns = set(declared[table].polars_schema)
            for row in rows:
                assert row.keys() >= columns, (table, columns - row.keys())


@models
def test_one_batch_equals_many(cls: type[MachineModel]) -> None:
    stream = _streams(True)[0]
    whole = _run(cls(), stream, len(stream.segments))
    for batch in (1, 7, 360):
        _same(_run(cls(), stream, batch), whole)


@models
def test_pickle_mid_stream_continues_identically(cls: type[MachineModel]) -> None:
    stream = _streams(True)[0]
    half = len(stream.segments) // 2
    straight = cls()
    context = _fresh_context(stream)
    straight.score_segments(list(stream.segments[:half]), context)
    restored = pickle.loads(pickle.dumps(straight))
    rest = list(stream.segments[half:])
    _same(
        restored.score_segments(rest, _fresh_context(stream)),
        straight.score_segments(rest, _fresh_context(stream)),
    )


@models
def test_deterministic(cls: type[MachineModel]) -> None:
    stream = _streams(True)[1]
    _same(_run(cls(), stream, 100), _run(cls(), stream, 100))


@models
def test_empty_input(cls: type[MachineModel]) -> None:
    model = cls()
    out = model.score_segments([], Context())
    assert out.scores == [] and not any(out.tables.values())
    # and nothing broke: it still scores afterwards
    _run(model, _streams(False)[0], 360)


@models
def test_unknown_product_and_no_context(cls: type[MachineModel]) -> None:
    """Segments of a product nobody has seen and no ERP context at all: valid rows or none."""
    stream = _streams(False)[0]
    segments = []
    for seg in stream.segments[:400]:
        key = (*seg.key[:3], "WO-unknown", "P-never-seen", "LOT-x")
        segments.append(Segment(key, seg.rows, seg.full))
    out = cls().score_segments(segments, Context(stream.machine_id))
    for row in out.scores:
        assert row["product"] == "P-never-seen"
        assert 0.0 <= row["score"] <= 1.0


@models
def test_maintenance_and_feedback_do_not_break_it(cls: type[MachineModel]) -> None:
    stream = _streams(True)[0]
    model = cls()
    half = len(stream.segments) // 2
    model.score_segments(list(stream.segments[:half]), _fresh_context(stream))
    t = stream.segments[half].start
    for kind in ("tool_change", "failure", "maintenance"):
        model.maintenance(Maintenance(kind, t, t))
    for label in ("false_alarm", "true_problem"):
        model.feedback(label)
    out = model.score_segments(list(stream.segments[half:]), _fresh_context(stream))
    assert all(0.0 <= r["score"] <= 1.0 for r in out.scores)
    assert all(math.isfinite(v) for v in model.metrics().values())


#: the most a model may flag of in-control windows (after its warm-up: the first hour)
IN_CONTROL_FLAG_SHARE = 0.01


@models
def test_calibrated_on_in_control_data(cls: type[MachineModel]) -> None:
    """On a plant without faults a model flags almost nothing once warmed up."""
    warm = T0 + timedelta(hours=1)
    flagged = scored = 0
    for stream in _streams(False):
        out = _run(cls(), stream, 360)
        rows = [r for r in out.scores if r["window_start"] >= warm]
        scored += len(rows)
        flagged += sum(r["is_anomaly"] for r in rows)
    if cls.name == "champion":
        return  # it passes on the champion's own flags (the stream here flags 6 %)
    assert flagged <= IN_CONTROL_FLAG_SHARE * max(scored, 1), (cls.name, flagged, scored)


def test_engine_runs_every_model_and_quarantines() -> None:
    stream = _streams(True)[0]
    engine = MachineModels()
    assert list(engine.models) == [cls.name for cls in MODELS]
    context = _fresh_context(stream)
    out = engine.update([Segment(s.key, s.rows) for s in stream.segments], context)
    sensor = {r["window_start"] for r in out["sensor"].scores if r["is_anomaly"]}
    assert sensor, "the faulty stream has sensor faults"
    assert sensor <= context.quarantine
    assert engine.windows == len({s.start for s in stream.segments})


def test_settings_by_model_name() -> None:
    models = build_models({"anomaly": {"threshold": 0.99999}})
    assert models["anomaly"].threshold == 0.99999
    with pytest.raises(ModelSettingsError, match="no model named 'zscore'"):
        check_settings({"zscore": {"threshold": 0.9}})
    with pytest.raises(ModelSettingsError, match="has no setting 'treshold'"):
        check_settings({"anomaly": {"treshold": 0.9}})
    # a threshold on a 0..1 score outside (0, 1) would never flag, or flag every window
    for value in (0.0, 1.0, 2.0):
        with pytest.raises(ModelSettingsError, match=r"threshold = .*must be between 0 and 1"):
            check_settings({"anomaly": {"threshold": value}})
    check_settings({"failure_risk": {"learn_below": 5.0}})  # not a 0..1 score: no such bound


def test_a_models_file_sets_models_and_alerts_and_refuses_typos(tmp_path) -> None:
    from floorsight.alerts.hygiene import load_alert_hygiene
    from floorsight.models.registry import model_settings

    path = tmp_path / "models.toml"
    path.write_text(
        '[spc]\nrules = "western_electric"\npage = { "1" = "critical" }\n\n'
        "[capability]\ncpk_level = 1.67\n\n[alerts]\nhold_s = 300\n"
    )
    settings = model_settings(path)
    assert settings == {
        "spc": {"rules": "western_electric", "page": {"1": "critical"}},
        "capability": {"cpk_level": 1.67},
    }
    models = build_models(settings)
    assert models["capability"].cpk_level == 1.67
    assert load_alert_hygiene(path).hold == timedelta(seconds=300)
    path.write_text("[capability]\ncpk = 1.67\n")
    with pytest.raises(ModelSettingsError, match=r"models.toml: model 'capability' has no setting"):
        model_settings(path)
