"""Fuzzing the models settings file (hypothesis, bounded): random TOML documents of model
sections and ``[alerts]``, with settings of every type, and random bytes, through
:func:`model_settings` and :func:`load_alert_hygiene` (what ``floorsight run --models FILE``
reads before the run starts).

What must hold: nothing but the documented :class:`ModelSettingsError` /
:class:`AlertHygieneError` escapes, and settings that are taken build every model and score
with it (a setting the stream cannot work with is refused at the start, never in the stream).
"""

from __future__ import annotations

import contextlib
import dataclasses

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from floorsight.alerts.hygiene import AlertHygieneError, load_alert_hygiene
from floorsight.models.registry import MODELS, ModelSettingsError, build_models, model_settings

NAMES = [cls.name for cls in MODELS] + ["zscore", "sensor_health"]
SETTINGS = sorted(
    {f.name for cls in MODELS for f in dataclasses.fields(cls) if not f.name.startswith("_")}
    | {"treshold", "hold_s", "severity"}
)
VALUES = st.one_of(
    st.integers(-10, 10_000),
    st.floats(allow_nan=True, allow_infinity=True, width=32),
    st.booleans(),
    st.text(max_size=12),
    st.lists(st.one_of(st.text(max_size=6), st.integers(0, 9)), max_size=3),
    st.dictionaries(
        st.sampled_from(["1", "2", "9"]), st.sampled_from(["warning", "x"]), max_size=2
    ),
)


def _toml(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return {"nan": "nan", "inf": "inf", "-inf": "-inf"}.get(repr(value), repr(value))
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return '"' + value.encode("unicode_escape").decode("ascii").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return "{" + ", ".join(f'"{k}" = {_toml(v)}' for k, v in value.items()) + "}"


DOCUMENTS = st.dictionaries(
    st.sampled_from([*NAMES, "alerts"]),
    st.dictionaries(st.sampled_from(SETTINGS), VALUES, max_size=3),
    max_size=3,
).map(
    lambda doc: "\n".join(
        f"[{section}]\n" + "".join(f"{k} = {_toml(v)}\n" for k, v in body.items())
        for section, body in doc.items()
    )
)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(text=DOCUMENTS)
def test_any_models_file_is_settings_that_work_or_a_refusal(tmp_path, text) -> None:
    path = tmp_path / "models.toml"
    path.write_text(text)
    try:
        models = model_settings(path)
    except ModelSettingsError as e:
        assert str(path) in str(e)
    else:
        built = build_models(models)
        assert set(built) == {cls.name for cls in MODELS}
    try:
        load_alert_hygiene(path)
    except AlertHygieneError as e:
        assert str(path) in str(e)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.binary(max_size=200))
def test_any_bytes_are_settings_or_a_refusal(tmp_path, data) -> None:
    path = tmp_path / "models.toml"
    path.write_bytes(data)
    with contextlib.suppress(ModelSettingsError):
        model_settings(path)
    with contextlib.suppress(AlertHygieneError):
        load_alert_hygiene(path)
