"""Who hears about an alert, and where: routing rules from a TOML file.

An alert is routed by its type (``cause``), its machine's line and its severity. Rules map
those to roles (maintenance, quality, planning, ...); roles map to destinations (a webhook URL,
an MQTT topic per line, an e-mail address, the machine's OPC-UA node, the ERP's quality
notifications). Every matching rule adds its roles; an alert nobody acknowledges within
``escalation.after_s`` goes to the escalation roles too. See ``docs/alerts.md`` for the file
format and :data:`DEFAULT_ROUTING` for the routing the demo uses.

Example file::

    [delivery]
    max_age_s = 86400

    [escalation]
    after_s = 900
    roles = ["supervisor"]

    [destinations.maintenance_hook]
    kind = "webhook"
    url = "http://127.0.0.1:9000/alerts"
    secret_env = "FLOORSIGHT_MAINTENANCE_HOOK_SECRET"

    [destinations.line_topic]
    kind = "mqtt"
    url = "mqtt://127.0.0.1:1883"
    topic = "floorsight/alerts/{line}"

    [roles]
    maintenance = ["maintenance_hook", "line_topic"]

    [[rules]]
    causes = ["failure_risk", "sensor"]
    roles = ["maintenance"]
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Literal, TypeVar
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from floorsight.records import Severity

_T = TypeVar("_T")

_RANK = {Severity.INFO: 0, Severity.WARNING: 1, Severity.CRITICAL: 2}

DestinationKind = Literal["webhook", "mqtt", "opcua", "email", "erp_file", "erp_table"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


#: keys that would put a secret in the routing file itself, and what to write instead
_PLAIN_SECRETS = {
    "password": "password_env",
    "secret": "secret_env",
    "token": "secret_env",
    "api_key": "secret_env",
}
#: which destination kinds take which optional fields
_OPTIONAL = {
    "user": ("opcua", "email", "mqtt"),
    "password_env": ("opcua", "email", "mqtt", "erp_table"),
    "password_file": ("opcua", "email", "mqtt", "erp_table"),
    "secret_env": ("webhook",),
    "secret_file": ("webhook",),
    "starttls": ("email",),
    "security": ("opcua",),
    "cert": ("opcua",),
    "key": ("opcua",),
    "nodes": ("opcua",),
}


class OpcuaNodes(_Strict):
    """The plant's own nodes an alert writes for one machine (``[destinations.X.nodes.M]``),
    each a node id in the standard text form, best with its namespace by URI
    (``nsu=urn:acme:press-shop;s=Press07.AlarmMessage``) so that it survives a server that
    renumbers its namespaces."""

    alarm_text: str | None = None  # the alert's text (String), or "cleared ..." when it clears
    hold: str | None = None  # true for material and anomaly causes; a person releases it

    @model_validator(mode="after")
    def _node_ids(self) -> OpcuaNodes:
        if self.alarm_text is None and self.hold is None:
            raise ValueError("name the machine's alarm_text node, its hold node, or both")
        from asyncua import ua

        for name in ("alarm_text", "hold"):
            text = getattr(self, name)
            if text is None:
                continue
            try:
                ua.NodeId.from_string(text)
            except Exception:
                raise ValueError(
                    f"{name} = {text!r} is no OPC-UA node id (e.g. nsu=urn:plant;s=Press07.Hold)"
                ) from None
        return self


class Destination(_Strict):
    """Where notifications go; which fields apply depends on ``kind``.

    - ``webhook``: ``url`` (HTTP POST of the JSON body, ``Idempotency-Key`` header), signed
      with HMAC-SHA256 (:mod:`floorsight.alerts.signing`) when ``secret_env`` (an environment
      variable) or ``secret_file`` (a file only its owner can read) names the shared secret;
    - ``mqtt``: ``url`` (``mqtt://host:port``) and ``topic`` (``{line}`` and ``{machine_id}``
      are filled in), QoS 1; ``user`` and ``password_env``/``password_file`` for the broker;
    - ``opcua``: ``url`` of the plant's OPC-UA server; ``nodes`` names, per machine, the
      nodes an alert writes (:class:`OpcuaNodes`: ``alarm_text``, ``hold``), each written as
      the node's own data type; without ``nodes``, floorsight's own simulator nodes
      (``<line>.<machine>.AlarmText`` and ``QualityHold`` in ``urn:floorsight:plant``).
      ``security`` (``POLICY,MODE``, e.g. ``Basic256Sha256,SignAndEncrypt``) with ``cert`` and
      ``key`` (default: the client certificate generated in the floorsight home), ``user`` and
      ``password_env``/``password_file`` when the server asks for a login;
    - ``email``: ``address`` and ``url`` (``smtp://host:port``, or ``smtps://`` for TLS from
      the start; ``starttls = true`` upgrades a plain connection); ``user`` and
      ``password_env``/``password_file`` log in;
    - ``erp_file``: ``path`` of a drop folder (one JSON file per notification);
    - ``erp_table``: ``url`` of the ERP database (a DuckDB file path or ``postgresql://``),
      table ``quality_notifications``; a PostgreSQL password from ``password_env``/
      ``password_file`` (or libpq's own ``PGPASSWORD`` / ``~/.pgpass``).

    ``deadline_s`` bounds one whole delivery attempt (connect, send, answer). A password or a
    secret written in the file itself, or inside a URL, is refused: the routing file is
    configuration, readable by whoever runs or reviews the plant's setup.
    """

    kind: DestinationKind
    url: str | None = None
    topic: str | None = None
    address: str | None = None
    path: str | None = None
    user: str | None = None
    password_env: str | None = None
    password_file: str | None = None
    secret_env: str | None = None
    secret_file: str | None = None
    starttls: bool = False
    security: str | None = None
    cert: str | None = None
    key: str | None = None
    nodes: dict[str, OpcuaNodes] | None = None
    deadline_s: float = Field(default=10.0, gt=0)

    @model_validator(mode="before")
    @classmethod
    def _no_plain_secrets(cls, data: object) -> object:
        if isinstance(data, dict):
            for key, instead in _PLAIN_SECRETS.items():
                if key in data:
                    file = instead.replace("_env", "_file")
                    raise ValueError(
                        f"a {key} written in the routing file is refused: name an environment"
                        f' variable ({instead} = "VARIABLE") or a file only you can read'
                        f' ({file} = "/path/to/file", mode 600) instead'
                    )
            url = data.get("url")
            if isinstance(url, str) and "://" in url and urlsplit(url).password:
                raise ValueError(
                    "a password inside the url is refused: take it out of the url and name an"
                    ' environment variable (password_env = "VARIABLE") or a private file'
                    ' (password_file = "/path/to/file") instead'
                )
        return data

    @model_validator(mode="after")
    def _needs(self) -> Destination:
        needed = {
            "webhook": ("url",),
            "mqtt": ("url", "topic"),
            "opcua": ("url",),
            "email": ("url", "address"),
            "erp_file": ("path",),
            "erp_table": ("url",),
        }[self.kind]
        missing = [f for f in needed if getattr(self, f) is None]
        if missing:
            raise ValueError(f"a {self.kind} destination needs {', '.join(missing)}")
        for name, kinds in _OPTIONAL.items():
            if getattr(self, name) not in (None, False) and self.kind not in kinds:
                raise ValueError(f"a {self.kind} destination takes no {name}")
        return self


class Rule(_Strict):
    """Roles for alerts of these causes, on these lines, at or above this severity.

    An empty ``causes`` or ``lines`` matches all.
    """

    causes: list[str] = Field(default_factory=list)
    lines: list[str] = Field(default_factory=list)
    min_severity: Severity = Severity.INFO
    roles: list[str]

    def matches(self, cause: str, line: str, severity: str) -> bool:
        return (
            (not self.causes or cause in self.causes)
            and (not self.lines or line in self.lines)
            and _RANK[Severity(severity)] >= _RANK[self.min_severity]
        )


class Escalation(_Strict):
    """Alerts still open and unacknowledged ``after_s`` seconds after they were sent."""

    after_s: float = 900.0
    roles: list[str] = Field(default_factory=list)


class Delivery(_Strict):
    """How the delivery loop retries (``[delivery]``; see ``floorsight.alerts.outbox``)."""

    max_delay_s: float = Field(default=900.0, gt=0)  # backoff cap
    max_age_s: float = Field(default=86400.0, gt=0)  # then a failing notification is parked
    batch: int = Field(default=100, gt=0)  # notifications per destination and round
    workers: int = Field(default=4, gt=0)  # destinations delivered at once


class Routing(_Strict):
    destinations: dict[str, Destination] = Field(default_factory=dict)
    roles: dict[str, list[str]] = Field(default_factory=dict)
    rules: list[Rule] = Field(default_factory=list)
    escalation: Escalation = Field(default_factory=Escalation)
    delivery: Delivery = Field(default_factory=Delivery)

    @model_validator(mode="after")
    def _references(self) -> Routing:
        for role, names in self.roles.items():
            for name in names:
                if name not in self.destinations:
                    raise ValueError(f"role {role!r} names unknown destination {name!r}")
        used = [r for rule in self.rules for r in rule.roles] + self.escalation.roles
        for role in used:
            if role not in self.roles:
                raise ValueError(f"a rule names unknown role {role!r}")
        return self

    def roles_for(self, cause: str, line: str, severity: str) -> list[str]:
        """Every role a matching rule names, in rule order, each once."""
        out: list[str] = []
        for rule in self.rules:
            if rule.matches(cause, line, severity):
                out += [r for r in rule.roles if r not in out]
        return out

    def destinations_for(self, roles: list[str]) -> list[str]:
        out: list[str] = []
        for role in roles:
            out += [d for d in self.roles[role] if d not in out]
        return out


class RoutingError(ValueError):
    """The routing file cannot be used; the message names the file and what is wrong."""


def load_routing(path: Path) -> Routing:
    """Read and check a routing file; errors name the file and the offending entry."""
    return load_settings(path, Routing.model_validate, RoutingError)


def load_settings(
    path: Path,
    validate: Callable[[dict], _T],
    error: type[ValueError],
    section: tuple[str, ...] = (),
) -> _T:
    """Read a TOML settings file and ``validate`` its document; ``error`` names the file and
    the offending entries (prefixed by ``section``), without their input: it may be a secret
    someone wrote in the file."""
    try:
        data = tomllib.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise error(f"{path}: {e}") from None
    try:
        return validate(data)
    except ValidationError as e:
        problems = "; ".join(
            f"{'.'.join((*section, *(str(p) for p in err['loc']))) or 'file'}: {err['msg']}"
            for err in e.errors(include_url=False, include_input=False)
        )
        raise error(f"{path}: {problems}") from None


def default_routing(home: Path) -> Routing:
    """The demo's routing: every role gets the ERP's quality-notification drop folder."""
    return Routing.model_validate(
        {
            "destinations": {
                "erp_drop": {"kind": "erp_file", "path": str(home / "quality_notifications")},
            },
            "roles": {
                "quality": ["erp_drop"],
                "maintenance": ["erp_drop"],
                "planning": ["erp_drop"],
            },
            # from warning up: an info alert (muted in a setup or maintenance) pages nobody
            "rules": [
                {
                    "causes": [
                        *("anomaly", "order_offset", "drift", "out_of_spec", "spc"),
                        *("hotelling", "capability", "deviation"),
                    ],
                    "min_severity": "warning",
                    "roles": ["quality"],
                },
                {
                    "causes": ["failure_risk", "sensor", "champion"],
                    "min_severity": "warning",
                    "roles": ["maintenance"],
                },
                {"causes": ["failure_risk"], "min_severity": "critical", "roles": ["planning"]},
            ],
            "escalation": {"after_s": 900, "roles": ["planning"]},
        }
    )
