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
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from floorsight.models.anomaly import AnomalyModel
from floorsight.models.base import MachineModel
from floorsight.models.capability import CapabilityModel
from floorsight.models.champion_scores import ChampionModel
from floorsight.models.deviation_monitor import DeviationModel
from floorsight.models.failure import MachineFailureModel
from floorsight.models.feature_drift import FeatureDriftModel
from floorsight.models.hotelling import HotellingModel
from floorsight.models.order_drift import OrderDriftModel
from floorsight.models.order_offset import OrderOffsetModel
from floorsight.models.out_of_spec import OutOfSpecModel
from floorsight.models.sensor_health import SensorHealthModel
from floorsight.models.spc_monitor import SpcModel
from floorsight.storage import TableSpec

MODELS: tuple[type[MachineModel], ...] = (
    SensorHealthModel,
    AnomalyModel,
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


def settings_of(cls: type[MachineModel]) -> list[str]:
    """The settings of a model: its public dataclass fields."""
    return [f.name for f in dataclasses.fields(cls) if not f.name.startswith("_")]


def check_settings(settings: ModelSettings, source: str = "models settings") -> None:
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
        known = settings_of(cls)
        for key in values:
            if key not in known:
                settings = ", ".join(known)
                raise ModelSettingsError(
                    f"{source}: model {name!r} has no setting {key!r} (settings: {settings})"
                )


def build_models(settings: ModelSettings | None = None) -> dict[str, MachineModel]:
    """One instance of every registered model, by name, with ``settings`` applied."""
    settings = settings or {}
    check_settings(settings)
    return {cls.name: cls(**dict(settings.get(cls.name, {}))) for cls in MODELS}


def model_settings(path: Path) -> dict[str, dict[str, Any]]:
    """The model sections of a settings TOML file (other sections, such as ``[alerts]``, are
    left to their readers), checked."""
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise ModelSettingsError(f"{path}: {e}") from None
    models = {k: v for k, v in data.items() if k != "alerts"}
    check_settings(models, str(path))
    return models
