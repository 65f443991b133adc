"""The registry: the one list of per-machine models the score step runs, in the order it runs
them (a model that quarantines windows comes before the models that read the quarantine).

Adding a model is a file with a :class:`~floorsight.models.base.MachineModel` and a line here.
Every model's settings (its dataclass fields) can be set from a TOML file, one section per
model name (:func:`model_settings`), for instance::

    [anomaly]
    threshold = 0.99995

    [spc]
    rules = "western_electric"
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from floorsight.models.anomaly import AnomalyModel
from floorsight.models.base import Context, MachineModel
from floorsight.models.capability import CapabilityModel
from floorsight.models.champion_scores import ChampionModel
from floorsight.models.deviation_monitor import DeviationModel
from floorsight.models.failure import MachineFailureModel
from floorsight.models.feature_drift import FeatureDriftModel
from floorsight.models.hotelling import HotellingModel
from floorsight.models.machine import Segment
from floorsight.models.order_drift import OrderDriftModel
from floorsight.models.order_offset import OrderOffsetModel
from floorsight.models.out_of_spec import OutOfSpecModel
from floorsight.models.sensor_health import SensorHealthModel
from floorsight.models.spc_monitor import SpcModel
from floorsight.models.surprise import SurpriseModel
from floorsight.storage import TableSpec

MODELS: tuple[type[MachineModel], ...] = (
    SensorHealthModel,
    AnomalyModel,
    SurpriseModel,
    OrderOffsetModel,
    OrderDriftModel,
    ChampionModel,
    DeviationModel,
    CapabilityModel,
    FeatureDriftModel,
    OutOfSpecModel,
    SpcModel,
    HotellingModel,
    MachineFailureModel,
)

#: model name -> {setting: value}: what a models settings file holds
ModelSettings = Mapping[str, Mapping[str, Any]]


class ModelSettingsError(ValueError):
    """A models settings file names a model or a setting that does not exist."""


def model_tables() -> list[TableSpec]:
    """The tables of the registered models beside ``scores`` (each written by its model)."""
    return [spec for cls in MODELS for spec in cls.tables]


def by_name() -> dict[str, type[MachineModel]]:
    return {cls.name: cls for cls in MODELS}


#: settings that are thresholds on a model's 0..1 score (where their default is one)
SCORE_SETTINGS = frozenset({"threshold", "learn_below"})


def check_settings(settings: ModelSettings, source: str = "models settings") -> None:
    """Refuse unknown models and settings, values of another type than the setting's default
    (a whole number for a float is fine), negative or non-finite numbers, and settings the
    model itself refuses or cannot score with; each error names the model and the setting."""
    _check_names(settings, source)
    for name, values in settings.items():
        cls = by_name()[name]
        defaults = _defaults(cls)
        for key, value in values.items():
            problem = _value_problem(defaults[key], value)
            if problem is None and key in SCORE_SETTINGS and 0 < defaults[key] < 1:
                # a score is 0..1: 1 or more never flags, 0 flags every window
                problem = None if 0 < value < 1 else "a score threshold: must be between 0 and 1"
            if problem:
                raise ModelSettingsError(f"{source}: [{name}] {key} = {value!r}: {problem}")
        try:
            _smoke(cls(**dict(values)))
        except Exception as e:  # the model's own checks, or what it cannot score with
            raise ModelSettingsError(f"{source}: [{name}]: {type(e).__name__}: {e}") from None


def _check_names(settings: ModelSettings, source: str) -> None:
    """Refuse unknown models and settings, naming them and what exists."""
    models = by_name()
    for name, values in settings.items():
        cls = models.get(name)
        if cls is None:
            raise ModelSettingsError(
                f"{source}: no model named {name!r} (models: {', '.join(models)})"
            )
        if not isinstance(values, Mapping):
            raise ModelSettingsError(f"{source}: [{name}] must be a table of settings")
        known = [f.name for f in dataclasses.fields(cls) if not f.name.startswith("_")]
        for key in values:
            if key not in known:
                raise ModelSettingsError(
                    f"{source}: model {name!r} has no setting {key!r} (settings: "
                    f"{', '.join(known)})"
                )


def _defaults(cls: type[MachineModel]) -> dict[str, Any]:
    out = {}
    for f in dataclasses.fields(cls):
        if not f.name.startswith("_"):
            factory = f.default_factory
            out[f.name] = f.default if factory is dataclasses.MISSING else factory()
    return out


def _value_problem(default: Any, value: Any) -> str | None:
    """Why ``value`` cannot stand for a setting whose default is ``default`` (None: it can)."""
    if isinstance(default, bool):
        return None if isinstance(value, bool) else "must be true or false"
    if isinstance(default, int | float):
        if isinstance(value, bool) or not isinstance(value, int | float):
            return "must be a number"
        if isinstance(default, int) and not isinstance(value, int):
            return "must be a whole number"
        if not math.isfinite(value) or value < 0:
            return "must be a finite number, not negative"
        return None
    if isinstance(default, str):
        return None if isinstance(value, str) else "must be a string"
    if isinstance(default, list | tuple):
        ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
        return None if ok else "must be a list of strings"
    if isinstance(default, dict):
        return None if isinstance(value, Mapping) else "must be a table"
    return f"cannot be set from a file (a {type(default).__name__})"


def _smoke(model: MachineModel) -> None:
    """Score a few windows of a small machine with the model: settings it cannot work with
    (a zero half-life ...) fail here, before the run starts, not in the stream."""
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    segments = []
    for i in range(64):
        start = t0 + timedelta(seconds=10 * i)
        rows = {
            s: {"n": 10, "mean": m + 0.01 * (i % 7), "std": 0.1, "min": m - 0.2,
                "max": m + 0.2, "last": m}
            for s, m in (("bore", 25.0), ("temp", 40.0))
        }  # fmt: skip
        key = ("M", start, start + timedelta(seconds=10), f"WO-{i // 32}", "P", "L")
        segments.append(Segment(key, rows, rows))
    model.score_segments(segments, Context("M", {("P", "bore"): (24.0, 25.0, 26.0)}))


def build_models(settings: ModelSettings | None = None) -> dict[str, MachineModel]:
    """One instance of every registered model, by name, with ``settings`` applied (checked by
    name here, once per machine; a settings file is checked whole when it is read:
    :func:`model_settings`)."""
    settings = settings or {}
    _check_names(settings, "models settings")
    return {cls.name: cls(**dict(settings.get(cls.name, {}))) for cls in MODELS}


def model_settings(path: Path) -> dict[str, dict[str, Any]]:
    """The model sections of a settings TOML file (other sections, such as ``[alerts]``, are
    left to their readers), checked."""
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise ModelSettingsError(f"{path}: {e}") from None
    models = {k: v for k, v in data.items() if k != "alerts"}
    check_settings(models, str(path))
    return models
