"""The configuration file: one TOML file for everything ``floorsight run``, ``demo`` and
``dashboard`` take (docs/configuration.md).

``[run]``, ``[demo]`` and ``[dashboard]`` hold the commands' own options, each under its long
name with underscores (``window_s``, ``topic`` as a list, ``json``); the keys and their types
are read from the commands themselves (their click parameters), so an option added to a command
is a key of its section without a change here. The other sections hold what has no option:
``[models.<name>]`` and ``[alerts]`` (a ``--models`` file's content), ``[routing]`` (a
``--routing`` file's), ``[retention]`` and ``[pipeline]`` (lateness, context hold, alert
hysteresis, sensor ranges).

Precedence, highest first: the command line, ``FLOORSIGHT_<SECTION>__<KEY>`` environment
variables, the file, the commands' defaults. Secrets are references in the file (``{env =
"NAME"}`` or ``{file = "/private/path"}``), never values: a literal one is refused.
"""

from __future__ import annotations

import atexit
import difflib
import math
import os
import re
import shutil
import tempfile
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal, get_args
from urllib.parse import urlsplit

import tomli_w
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, model_validator

from floorsight import config

#: the sections that hold a command's options, by command name
COMMANDS = ("run", "demo", "dashboard")
#: the sections that hold what is no option
STRUCTURED = ("models", "alerts", "routing", "retention", "pipeline")
ENV_PREFIX = "FLOORSIGHT_"
#: parameters of a command that are not settings
_NOT_SETTINGS = frozenset({"help", "config_file"})
#: options whose value must be a positive number (besides every ``*_s`` and ``*_rows``)
_POSITIVE = frozenset({"workers", "processes", "speed", "minutes", "machines", "interval"})

#: keys that hold a secret, by section: the environment variable the command reads it from and
#: the option naming a private file that holds it instead
SecretKeys = Mapping[str, Mapping[str, tuple[str, str]]]


class SettingsFileError(ValueError):
    """A configuration file that cannot be used; ``problems`` are ``key: what is wrong``."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        super().__init__(f"{source}: " + "; ".join(problems))


@dataclass(frozen=True)
class OptionKey:
    """One option of a command as a key of its section."""

    key: str  # the long option's name with underscores: ``window_s``, ``json``
    name: str  # the parameter's name, which the command's defaults are looked up by
    annotation: Any
    multiple: bool


@dataclass(frozen=True)
class SecretRef:
    """Where a secret is: an environment variable or a private file."""

    env: str | None = None
    file: Path | None = None


class PlantSettings(BaseModel):
    """``[pipeline]``: what a plant sets that has no command-line option. The defaults are the
    pipeline's own (``pipelines/flow.py`` ``PipelineSettings``)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    #: seconds a reading may arrive behind its machine's newest one and still count
    lateness_s: Annotated[float, Field(ge=0, allow_inf_nan=False)] = 2.0
    #: seconds (event time) a reading without a work order waits for its context
    context_hold_s: Annotated[float, Field(ge=0, allow_inf_nan=False)] = 30.0
    #: windows in a row a model must flag before an alert opens, and clear before it clears
    alert_open_after: Annotated[int, Field(ge=1)] = 2
    alert_clear_after: Annotated[int, Field(ge=1)] = 3
    #: sensor name -> [low, high]: a reading outside is a dead letter ("out of range")
    sensor_ranges: dict[str, Annotated[tuple[float, float], Field(strict=False)]] = Field(
        default_factory=dict
    )

    def pipeline_fields(self) -> dict:
        """These settings as ``PipelineSettings`` fields (the sensor ranges go to the rules)."""
        return {
            "lateness": timedelta(seconds=self.lateness_s),
            "context_hold": timedelta(seconds=self.context_hold_s),
            "alert_open_after": self.alert_open_after,
            "alert_clear_after": self.alert_clear_after,
        }

    @model_validator(mode="after")
    def _ranges_ordered(self) -> PlantSettings:
        for sensor, (low, high) in self.sensor_ranges.items():
            if not (math.isfinite(low) and math.isfinite(high) and low < high):
                raise ValueError(f"sensor_ranges.{sensor}: low must be below high (both finite)")
        return self


class Retention(BaseModel):
    """``[retention]``: days to keep each table's rows (``run --retain-days TABLE=DAYS``)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    days: dict[str, Annotated[int, Field(ge=1)]] = Field(default_factory=dict)


@dataclass
class SettingsFile:
    """A checked configuration file (or only the environment's overrides, without a file)."""

    path: Path | None
    #: by command: parameter name -> value, the file's values with the environment's over them
    options: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: by command: key -> where the value came from (``file`` or the variable's name)
    origins: dict[str, dict[str, str]] = field(default_factory=dict)
    #: by command: secret key -> its reference
    secrets: dict[str, dict[str, SecretRef]] = field(default_factory=dict)
    models: dict[str, dict] = field(default_factory=dict)
    alerts: dict | None = None
    routing: dict | None = None
    retention: dict[str, int] = field(default_factory=dict)
    pipeline: PlantSettings = field(default_factory=PlantSettings)

    def defaults(
        self, command: str, params: Mapping[str, Any], secret_keys: SecretKeys
    ) -> dict[str, Any]:
        """The defaults ``command`` takes from this file (click's ``default_map``): its section,
        its secrets (a file's path as the option; a variable copied to the one the command
        reads, unless that is set), and the inline sections as files of their own."""
        values = dict(self.options.get(command, {}))
        for key, ref in self.secrets.get(command, {}).items():
            env, file_option = secret_keys[command][key]
            if ref.file is not None:
                values.setdefault(file_option, str(ref.file))
            elif ref.env != env and env not in os.environ:
                os.environ[env] = os.environ[ref.env]
        inline = self._models_document()
        if inline and "models" in params:
            values.setdefault("models", str(_materialize("models", inline)))
        if self.routing is not None and "routing" in params:
            values.setdefault("routing", str(_materialize("routing", self.routing)))
        if self.retention and "retain_days" in params:
            values.setdefault("retain_days", [f"{t}={d}" for t, d in self.retention.items()])
        return values

    def _models_document(self) -> dict:
        return {**self.models, **({"alerts": self.alerts} if self.alerts is not None else {})}

    def summary(self) -> list[str]:
        """One line per section: what is set (secrets by reference, never a value)."""
        lines = []
        for command in COMMANDS:
            keys = [
                f"{k} ({origin})" if origin != "file" else k
                for k, origin in self.origins.get(command, {}).items()
            ]
            keys += [
                f"{k} (secret from {'$' + r.env if r.env else r.file})"
                for k, r in self.secrets.get(command, {}).items()
            ]
            if keys:
                lines.append(f"[{command}] " + ", ".join(keys))
        if self.models:
            lines.append("[models] " + ", ".join(self.models))
        if self.alerts is not None:
            lines.append("[alerts] " + (", ".join(self.alerts) or "(defaults)"))
        if self.routing is not None:
            destinations = self.routing.get("destinations", {})
            lines.append(f"[routing] {len(destinations)} destinations")
        if self.retention:
            lines.append(
                "[retention] " + ", ".join(f"{t} {d} d" for t, d in self.retention.items())
            )
        given = [k for k in PlantSettings.model_fields if k in self.pipeline.model_fields_set]
        if given:
            lines.append("[pipeline] " + ", ".join(given))
        return lines


def command_keys(command: Any) -> dict[str, OptionKey]:
    """The keys of ``command``'s section (a command of ``typer.main.get_command``): each option
    under its long name with underscores, typed after the option's own annotation."""
    out: dict[str, OptionKey] = {}
    for param in command.params:
        if param.param_type_name != "option" or param.name in _NOT_SETTINGS:
            continue
        longs = [o for o in param.opts if o.startswith("--")] or list(param.opts)
        key = longs[0].lstrip("-").replace("-", "_")
        multiple = bool(param.multiple)
        annotation = _annotation(param, key, multiple)
        out[key] = OptionKey(key, param.name or key, annotation, multiple)
    return out


def _annotation(param: Any, key: str, multiple: bool) -> Any:
    """The pydantic type of an option's value, with its bounds (the option's ``min``/``max``,
    else those its name implies)."""
    descriptor = getattr(param, "type_descriptor", None)
    kind = descriptor.annotation if descriptor is not None else str
    if multiple and get_args(kind):
        kind = get_args(kind)[0]
    choices = getattr(descriptor, "choices", None)
    if choices:
        kind = Literal[tuple(getattr(c, "value", c) for c in choices)]
    elif kind in (int, float):
        kind = Annotated[kind, Field(**_bounds(param, key, kind))]
    elif kind is not bool:
        kind = str  # paths, URLs, names: the command converts and checks them itself
    return list[kind] if multiple else kind


def _bounds(param: Any, key: str, kind: type) -> dict[str, Any]:
    bounds: dict[str, Any] = {"allow_inf_nan": False} if kind is float else {}
    low, high = getattr(param, "min", None), getattr(param, "max", None)
    if low is not None or high is not None:
        return bounds | {k: v for k, v in (("ge", low), ("le", high)) if v is not None}
    if key.endswith("port"):
        return bounds | {"ge": 1, "le": 65535}
    if key.endswith(("_s", "_rows", "_hours")) or key in _POSITIVE:
        return bounds | {"gt": 0}
    if key.endswith("_id"):
        return bounds | {"ge": 0}
    return bounds


def _section_model(command: str, keys: Mapping[str, OptionKey]) -> type[BaseModel]:
    # fields under names of their own (an option ``--json`` would shadow BaseModel.json)
    fields = {f"o_{k.key}": (k.annotation | None, Field(None, alias=k.key)) for k in keys.values()}
    return create_model(f"{command}_section", __config__=ConfigDict(extra="forbid"), **fields)


def read(path: Path) -> dict:
    """The parsed document of a configuration file (errors name the file and the line)."""
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SettingsFileError(str(path), ["no such file"]) from None
    except (OSError, UnicodeDecodeError) as e:
        raise SettingsFileError(str(path), [f"cannot read it: {e}"]) from None
    except tomllib.TOMLDecodeError as e:
        raise SettingsFileError(str(path), [f"not TOML: {e}"]) from None


def load(
    path: Path | None,
    root: Any,
    secret_keys: SecretKeys,
    environ: Mapping[str, str] | None = None,
) -> SettingsFile:
    """Read and check the configuration file ``path`` (None: the environment's overrides alone)
    against the commands of ``root``; every problem is collected, each naming its key."""
    environ = os.environ if environ is None else environ
    document = read(path) if path is not None else {}
    source = str(path) if path is not None else "environment"
    problems: list[str] = []
    result = SettingsFile(path)
    for name in document:
        if name not in (*COMMANDS, *STRUCTURED):
            problems.append(_unknown(name, (*COMMANDS, *STRUCTURED), "unknown section"))
    for command in COMMANDS:
        keys = command_keys(_subcommand(root, command))
        section = _table(document, command, problems)
        secrets = secret_keys.get(command, {})
        _check_secrets(command, section, secrets, environ, result, problems)
        plain = {k: v for k, v in section.items() if k not in secrets}
        _refuse_url_passwords(command, plain, problems)
        env = _env_values(command, keys, environ, problems)
        values: dict[str, Any] = {}
        origins: dict[str, str] = {}
        for given, strict, origin in ((plain, True, "file"), (env[0], False, None)):
            checked = _validate(command, keys, given, strict, problems, env[1])
            values.update(checked)
            origins.update({k: origin or env[1][k] for k in checked})
        if command == "dashboard":
            problems += _shift_problems(values)
        result.options[command] = {keys[k].name: v for k, v in values.items()}
        result.origins[command] = origins
    _check_structured(document, result, problems)
    for command, section in ((c, document.get(c)) for c in COMMANDS):
        for key, inline in (
            ("models", ("models", "alerts")),
            ("routing", ("routing",)),
            ("retain_days", ("retention",)),
        ):
            if isinstance(section, dict) and key in section and set(inline) & set(document):
                sections = " and ".join(f"[{s}]" for s in inline if s in document)
                problems.append(f"{command}.{key}: give {sections} or {command}.{key}, not both")
    if problems:
        raise SettingsFileError(source, problems)
    return result


def _shift_problems(values: Mapping[str, Any]) -> list[str]:
    """The dashboard's shifts, checked as ``floorsight dashboard`` checks them."""
    if "shift_start" not in values and "shift_hours" not in values:
        return []
    from floorsight.dashboards.oee import ShiftPlan, shift_plan

    default = ShiftPlan()
    try:
        shift_plan(
            values.get("shift_start") or default.start_times,
            values.get("shift_hours", default.length.total_seconds() / 3600),
        )
    except ValueError as e:
        return [f"dashboard.shift_start, dashboard.shift_hours: {e}"]
    return []


def _subcommand(root: Any, name: str) -> Any:
    command = root.commands.get(name)
    if command is None:  # a programming error: the section names are the commands' names
        raise LookupError(f"the command line has no command {name!r}")
    return command


def _table(document: Mapping, name: str, problems: list[str]) -> dict:
    value = document.get(name, {})
    if not isinstance(value, dict):
        problems.append(f"{name}: must be a table ([{name}])")
        return {}
    return value


def _unknown(key: str, known, what: str = "unknown key") -> str:
    """``key: unknown key (did you mean ...?)``, the closest of ``known`` (last parts)."""
    close = difflib.get_close_matches(key.rpartition(".")[2], list(known), n=1)
    return f"{key}: {what}" + (f" (did you mean {close[0]}?)" if close else "")


def _check_secrets(
    command: str,
    section: Mapping,
    secrets: Mapping[str, tuple[str, str]],
    environ: Mapping[str, str],
    result: SettingsFile,
    problems: list[str],
) -> None:
    """Secrets are references: ``{env = "NAME"}`` (set) or ``{file = "PATH"}`` (private)."""
    for key in secrets:
        if key not in section:
            continue
        where = f"{command}.{key}"
        value = section[key]
        hint = 'give {env = "NAME"} or {file = "/path/mode-600"}'
        if not isinstance(value, dict):
            problems.append(f"{where}: a secret is never written in the file: {hint}")
            continue
        if set(value) not in ({"env"}, {"file"}) or not all(
            isinstance(v, str) and v for v in value.values()
        ):
            problems.append(f"{where}: {hint} (one of them, a non-empty string)")
            continue
        if "env" in value:
            if not environ.get(value["env"]):
                problems.append(f"{where}: the environment variable {value['env']} is not set")
                continue
            ref = SecretRef(env=value["env"])
        else:
            file = Path(value["file"])
            try:
                file = file.expanduser()
                exposed = config.exposed_file(file)
            except OSError as e:
                problems.append(f"{where}: cannot read {file}: {e.strerror}")
                continue
            except (RuntimeError, ValueError) as e:  # ~user of no user; a NUL in the path
                problems.append(f"{where}: no file path {str(file)!r}: {e}")
                continue
            if exposed:
                problems.append(f"{where}: {exposed}")
                continue
            ref = SecretRef(file=file)
        file_option = secrets[key][1]
        if file_option in section:
            problems.append(f"{where}: give the secret or {command}.{file_option}, not both")
            continue
        result.secrets.setdefault(command, {})[key] = ref


def _refuse_url_passwords(command: str, section: Mapping, problems: list[str]) -> None:
    """A URL with a password in it is a literal secret too (DSNs, broker and MLflow URLs)."""
    for key, value in section.items():
        for text in value if isinstance(value, list) else [value]:
            if isinstance(text, str) and "://" in text and _url_password(text):
                problems.append(
                    f"{command}.{key}: the URL holds a password: remove it (the client reads "
                    "it from its own variable or file, docs/configuration.md)"
                )
                break


def _url_password(text: str) -> bool:
    try:
        return bool(urlsplit(text).password)
    except ValueError:
        return False


def _env_values(
    command: str, keys: Mapping[str, OptionKey], environ: Mapping[str, str], problems: list[str]
) -> tuple[dict[str, Any], dict[str, str]]:
    """``FLOORSIGHT_<COMMAND>__<KEY>`` variables as values of the section's keys (a list key
    takes comma-separated items), and the variable each came from."""
    prefix = f"{ENV_PREFIX}{command.upper()}__"
    values: dict[str, Any] = {}
    names: dict[str, str] = {}
    for variable in sorted(environ):
        if not variable.startswith(prefix):
            continue
        key = variable.removeprefix(prefix).lower()
        if key not in keys:
            problems.append(f"{variable}: " + _unknown(f"{command}.{key}", keys))
            continue
        raw = environ[variable]
        values[key] = (
            [s.strip() for s in raw.split(",") if s.strip()] if keys[key].multiple else raw
        )
        names[key] = variable
    return values, names


def _validate(
    command: str,
    keys: Mapping[str, OptionKey],
    values: Mapping[str, Any],
    strict: bool,
    problems: list[str],
    variables: Mapping[str, str],
) -> dict[str, Any]:
    """``values`` checked against the section's types and bounds (strict for the file's
    TOML values, converted from text for variables); each problem names its key."""
    if not values:
        return {}
    try:
        checked = _section_model(command, keys).model_validate(dict(values), strict=strict)
    except ValidationError as e:
        for err in e.errors(include_url=False, include_input=False):
            key = str(err["loc"][0]) if err["loc"] else ""
            where = variables.get(key, "") + (": " if key in variables else "")
            if err["type"] == "extra_forbidden":
                problems.append(where + _unknown(f"{command}.{key}", keys))
            else:
                problems.append(f"{where}{_loc(command, err['loc'])}: {_message(err)}")
        return {}
    return {k: getattr(checked, f"o_{k}") for k in values}  # in the file's order


def _loc(prefix: str, loc: tuple) -> str:
    return ".".join((prefix, *(str(p) for p in loc)))


def _message(err: Mapping) -> str:
    """pydantic's message, said shortly for bounds and choices."""
    ctx = err.get("ctx") or {}
    short = {
        "greater_than": "must be > {gt}",
        "greater_than_equal": "must be >= {ge}",
        "less_than": "must be < {lt}",
        "less_than_equal": "must be <= {le}",
        "literal_error": "must be one of {expected}",
    }.get(err["type"])
    if short:
        try:
            return short.format(**{k: f"{v:g}" if _number(v) else v for k, v in ctx.items()})
        except (KeyError, ValueError):
            pass
    return str(err["msg"])[0].lower() + str(err["msg"])[1:] if err["msg"] else err["type"]


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_structured(document: Mapping, result: SettingsFile, problems: list[str]) -> None:
    """``[models.*]``, ``[alerts]``, ``[routing]``, ``[retention]``, ``[pipeline]``, each by
    the reader of its own file where it has one."""
    # each reader is imported only for its section: the models' brings River and SciPy
    models = _table(document, "models", problems)
    if models:
        from floorsight.models.registry import ModelSettingsError, check_settings

        try:
            check_settings(models, "models")
            result.models = models
        except ModelSettingsError as e:
            problems.append(_model_problem(str(e)))
    if "alerts" in document:
        from floorsight.alerts.hygiene import AlertHygiene

        alerts = _table(document, "alerts", problems)
        if _pydantic(AlertHygiene, alerts, "alerts", problems) is not None:
            result.alerts = alerts
    if "routing" in document:
        from floorsight.alerts.routing import Routing

        routing = _table(document, "routing", problems)
        if _pydantic(Routing, routing, "routing", problems) is not None:
            result.routing = routing
    retention = _pydantic(Retention, _table(document, "retention", problems), "retention", problems)
    if retention is not None and retention.days:
        from floorsight.retention import ALL, TIME_COLUMNS, RetentionError, parse_retain_days

        known = sorted({ALL, *TIME_COLUMNS})
        for table, days in retention.days.items():
            if table not in known:
                problems.append(_unknown(f"retention.days.{table}", known, "not retainable"))
                continue
            try:  # the option's own rules, so the file and --retain-days agree
                parse_retain_days([f"{table}={days}"])
            except RetentionError as e:
                problems.append(f"retention.days.{table}: {e}")
        result.retention = dict(retention.days)
    pipeline = _pydantic(
        PlantSettings, _table(document, "pipeline", problems), "pipeline", problems
    )
    if pipeline is not None:
        result.pipeline = pipeline


def _pydantic(model: type[BaseModel], value: dict, section: str, problems: list[str]):
    try:
        return model.model_validate(value)
    except ValidationError as e:
        for err in e.errors(include_url=False, include_input=False):
            if err["type"] == "extra_forbidden":
                known = model.model_fields if len(err["loc"]) == 1 else []
                problems.append(_unknown(_loc(section, err["loc"]), known))
            else:
                problems.append(f"{_loc(section, err['loc'])}: {_message(err)}")
        return None


def _model_problem(message: str) -> str:
    """The registry's ``models: [spc] rules = 'x': why`` as ``models.spc.rules: why``."""
    found = re.match(r"models: model '([^']+)' has no setting '([^']+)' (.*)$", message)
    if found:
        return f"models.{found[1]}.{found[2]}: unknown setting {found[3]}"
    found = re.match(r"models: \[([^\]]+)\] (\S+) = .*?: (.*)$", message)
    if found:
        return f"models.{found[1]}.{found[2]}: {found[3]}"
    found = re.match(r"models: \[([^\]]+)\]:? (.*)$", message)
    if found:
        return f"models.{found[1]}: {found[2]}"
    return message


def plant_settings(path: Path | None) -> PlantSettings:
    """``[pipeline]`` of the configuration file ``path`` (the defaults without one); the
    file was checked whole when the command started."""
    if path is None:
        return PlantSettings()
    section = read(path).get("pipeline", {})
    try:
        return PlantSettings.model_validate(section)
    except ValidationError as e:
        raise SettingsFileError(str(path), [str(e)]) from None


_written: list[Path] = []


def _materialize(name: str, document: dict) -> Path:
    """An inline section as a file of its own, for the readers (and a cluster's processes)
    that take a path; private, and removed when this process ends."""
    if not _written:
        _written.append(Path(tempfile.mkdtemp(prefix="floorsight-config-")))
        atexit.register(shutil.rmtree, _written[0], True)
    path = _written[0] / f"{name}.toml"
    path.write_text(tomli_w.dumps(document), encoding="utf-8")
    path.chmod(0o600)
    return path
