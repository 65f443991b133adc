"""The ``floorsight`` command line: demo, simulate, run, dashboard, replay, bench, eval."""

from __future__ import annotations

import json
import os
import sys
import threading
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated

import typer

from floorsight import config
from floorsight.opcua_cli import Cert as OpcuaCertOption
from floorsight.opcua_cli import Key as OpcuaKeyOption
from floorsight.opcua_cli import Security as OpcuaSecurityOption
from floorsight.opcua_cli import opcua_app
from floorsight.opcua_cli import run_fields as opcua_run_fields
from floorsight.records import FaultKind

app = typer.Typer(
    help="floorsight: stream analytics and predictive quality for manufacturing.",
    no_args_is_help=True,
    add_completion=False,
)


_KINDS = tuple(k.value for k in FaultKind)

# Secrets never travel on the command line (/proc/*/cmdline shows it to every user, and the
# cluster's child processes would inherit it): they come from these variables or a private file.
#: the password of ``floorsight run --opcua --user NAME`` (the OPC-UA server's login)
OPCUA_PASSWORD_ENV = "FLOORSIGHT_OPCUA_PASSWORD"
MQTT_PASSWORD_ENV = "FLOORSIGHT_MQTT_PASSWORD"
#: the password the simulated OPC-UA server requires (``floorsight simulate --opcua --user``)
SIM_PASSWORD_ENV = "FLOORSIGHT_SIM_OPCUA_PASSWORD"


#: the keys of the configuration file that hold a secret: the variable the command reads it
#: from, and the option of a private file that holds it instead
SECRET_KEYS = {
    "run": {
        "password": (OPCUA_PASSWORD_ENV, "password_file"),
        "mqtt_password": (MQTT_PASSWORD_ENV, "mqtt_password_file"),
    },
}


def _settings_file(path: Path | None):
    """The configuration file ``path`` checked against the commands (None: the environment's
    ``FLOORSIGHT_<COMMAND>__<KEY>`` overrides alone)."""
    from floorsight.settings_file import load

    return load(path, typer.main.get_command(app), SECRET_KEYS)


def _apply_settings_file(ctx: typer.Context, value: Path | None) -> Path | None:
    """``--config FILE``: the file's section of this command (and the environment's overrides)
    become its defaults, so an option given on the command line still wins; a bad file stops
    the command before it starts, naming each key."""
    from floorsight.settings_file import SettingsFileError

    if ctx.resilient_parsing:
        return value
    try:
        loaded = _settings_file(value)
    except SettingsFileError as e:
        raise typer.BadParameter(str(e), param_hint="--config") from None
    params = {p.name: p for p in ctx.command.params if p.name}
    defaults = loaded.defaults(ctx.info_name or "", params, SECRET_KEYS)
    ctx.default_map = {**(ctx.default_map or {}), **defaults}
    return value


ConfigFileOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        help="Configuration file (TOML, docs/configuration.md); options given here win over it.",
        is_eager=True,
        callback=_apply_settings_file,
    ),
]


def _secret(env: str, file: Path | None, option: str) -> str:
    """The secret from ``env`` or ``file``, or a usage error saying where to put it."""
    try:
        value = config.secret(env, file, required=True)
    except config.SecretError as e:
        raise typer.BadParameter(str(e), param_hint=option) from None
    except OSError as e:
        raise typer.BadParameter(f"cannot read {file}: {e.strerror}", param_hint=option) from None
    return value or ""


def _refuse_password_in_dsn(dsn: str, option: str) -> None:
    """A PostgreSQL URL with a password is refused: libpq and psycopg read it themselves from
    ``PGPASSWORD`` or ``~/.pgpass`` (or the file ``PGPASSFILE`` names)."""
    if not dsn.startswith(("postgresql://", "postgres://")):
        return
    from psycopg.conninfo import conninfo_to_dict

    try:
        has_password = bool(conninfo_to_dict(dsn).get("password"))
    except Exception:  # a malformed URL: the connection reports it, but no password passes
        userinfo = dsn.partition("://")[2].split("/")[0].rpartition("@")[0]
        has_password = ":" in userinfo or "password=" in dsn
    if has_password:
        raise typer.BadParameter(
            "the URL holds a password, and a command line is visible to every user of the "
            "machine: remove it and set PGPASSWORD, or put it in ~/.pgpass (mode 600) or the "
            "file PGPASSFILE names; libpq reads them itself",
            param_hint=option,
        )


def _refuse_credentials_in_uri(uri: str | None, option: str) -> str | None:
    """An MLflow URI with ``user:password@`` is refused: MLflow reads the credentials itself
    from ``MLFLOW_TRACKING_USERNAME`` and ``MLFLOW_TRACKING_PASSWORD`` (or a token)."""
    from urllib.parse import urlsplit

    if uri and "://" in uri and urlsplit(uri).password:
        raise typer.BadParameter(
            "the URI holds a password, and a command line is visible to every user of the "
            "machine: remove it and set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD "
            "(or MLFLOW_TRACKING_TOKEN), which MLflow reads itself",
            param_hint=option,
        )
    return uri


@app.command()
def demo(
    headless: Annotated[bool, typer.Option(help="Run without the dashboard.")] = False,
    minutes: Annotated[
        float | None, typer.Option(help="Stop after this many wall-clock minutes.")
    ] = None,
    speed: Annotated[float, typer.Option(help="Simulated seconds per wall second.")] = 10.0,
    machines: Annotated[int, typer.Option(help="Machines in the simulated plant.")] = 3,
    seed: Annotated[int, typer.Option(help="Seed of the plant and its faults.")] = 0,
    port: Annotated[int, typer.Option(help="Dashboard port on 127.0.0.1.")] = 8501,
    home: Annotated[
        Path | None, typer.Option(help="Folder for the demo's database and ERP files.")
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="End with the summary as one JSON line.")
    ] = False,
    routing: Annotated[
        Path | None,
        typer.Option(help="Alert routing file (TOML, see docs/alerts.md); default: ERP drop."),
    ] = None,
    models: Annotated[
        Path | None,
        typer.Option(help="TOML model settings and [alerts], as for `floorsight run --models`."),
    ] = None,
    config_file: ConfigFileOption = None,
) -> None:
    """Start the simulated plant, the pipeline and the dashboard on this machine."""
    from floorsight.demo import DemoConfig, run_demo

    if headless and minutes is None:
        raise typer.BadParameter("--headless needs --minutes (how long to run)")
    if models is not None:  # a bad models file stops the demo before it starts
        _read_models_file(models)
    cfg = DemoConfig(
        home=home or config.home() / "demo",
        machines=machines,
        minutes=minutes,
        speed=speed,
        seed=seed,
        headless=headless,
        port=port,
        routing=routing,
        models=models,
        config_file=config_file,
    )
    summary = run_demo(cfg, echo=typer.echo)
    if summary is None:
        return
    s = summary
    typer.echo(
        f"\nsimulated {s.simulated_s / 60:.1f} min of plant time (x{s.speed:g})\n"
        f"events read:         {s.events}\n"
        f"feature rows:        {s.feature_rows}\n"
        f"alerts raised:       {s.alerts} ({s.false_alerts} not matching an injected fault)\n"
        f"dead letters:        {s.dead_letters}\n"
        f"faults detected:     {s.faults_detected} of {s.faults_total}"
    )
    for f in s.faults:
        verdict = (
            f"detected {f['delay_s']:.0f} s (event time) after it started"
            if f["detected"]
            else "NOT detected"
        )
        typer.echo(f"  {f['fault_id']} {f['kind']} on {f['machine_id']}: {verdict}")
    typer.echo("alerts by type:      " + _counts(s.alerts_by_type))
    typer.echo(
        "notifications:       "
        + _counts(
            {
                d: f"{c['delivered']} delivered, {c['pending']} pending"
                for d, c in s.notifications.items()
            }
        )
    )
    if as_json:
        typer.echo(json.dumps(s.as_dict(), default=str))


def _counts(counts: dict) -> str:
    return ", ".join(f"{k}: {v}" for k, v in counts.items()) or "none"


@app.command()
def simulate(
    out: Annotated[
        Path | None,
        typer.Option(help="Write history, ERP context and ground truth here, as fast as possible."),
    ] = None,
    opcua: Annotated[
        str | None,
        typer.Option(help="Serve the plant live over OPC-UA, e.g. opc.tcp://127.0.0.1:4840/"),
    ] = None,
    mqtt: Annotated[
        str | None, typer.Option(help="Publish the plant live to this MQTT broker (HOST:PORT).")
    ] = None,
    machines: Annotated[int, typer.Option(help="Machines in the plant.")] = 3,
    days: Annotated[float | None, typer.Option(help="Simulated days (history or live).")] = None,
    hours: Annotated[float | None, typer.Option(help="Simulated hours, instead of days.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of plant, context and faults.")] = 0,
    start: Annotated[
        str | None,
        typer.Option(help="Start (ISO 8601); default: 2026-01-05T00:00Z for files, now live."),
    ] = None,
    hz: Annotated[
        int | None, typer.Option(help="Samples per second per sensor (default: 1 files, 10 live).")
    ] = None,
    faults_per_day: Annotated[
        float, typer.Option(help="Injected faults per machine and simulated day.")
    ] = 1.0,
    fault_kinds: Annotated[
        str | None,
        typer.Option(help="Comma-separated fault kinds (default all): " + ", ".join(_KINDS)),
    ] = None,
    file_format: Annotated[str, typer.Option("--format", help="parquet or csv.")] = "parquet",
    speed: Annotated[float, typer.Option(help="Live: simulated seconds per wall second.")] = 1.0,
    skab: Annotated[
        Path | None, typer.Option(help="Live: replay this SKAB CSV as a machine instead.")
    ] = None,
    user: Annotated[
        str | None,
        typer.Option(help=f"OPC-UA: require this username; its password from ${SIM_PASSWORD_ENV}."),
    ] = None,
    password_file: Annotated[
        Path | None,
        typer.Option(help="OPC-UA: or the password from this file (mode 600)."),
    ] = None,
    secure: Annotated[
        bool, typer.Option(help="OPC-UA: Basic256Sha256 with a generated certificate.")
    ] = False,
    cert_dir: Annotated[
        Path | None, typer.Option(help="OPC-UA: where the server certificate lives.")
    ] = None,
    every_sample: Annotated[
        bool,
        typer.Option(help="OPC-UA: write every reading and keep a history (for the pipeline)."),
    ] = False,
) -> None:
    """The plant simulator: write a history to files, or serve the plant live (OPC-UA, MQTT)."""
    from floorsight import simulate as sim

    if out is None and opcua is None and mqtt is None:
        raise typer.BadParameter(
            "give --out DIR (history) or --opcua URL / --mqtt HOST:PORT (live)"
        )
    live = out is None
    try:
        kinds = tuple(FaultKind(k.strip()) for k in fault_kinds.split(",")) if fault_kinds else None
    except ValueError as e:
        raise typer.BadParameter(f"{e}; kinds are: {', '.join(_KINDS)}") from None
    t0 = (
        datetime.fromisoformat(start).astimezone(UTC)
        if start
        else (datetime.now(tz=UTC) if live else datetime(2026, 1, 5, tzinfo=UTC))
    )
    horizon = timedelta(hours=hours) if hours is not None else timedelta(days=days or 1.0)
    opts = sim.PlantOptions(
        machines=machines,
        start=t0,
        horizon=horizon,
        seed=seed,
        sample_hz=hz or (10 if live else 1),
        faults_per_machine_day=faults_per_day,
        **({"fault_kinds": kinds} if kinds else {}),
    )
    if not live:
        plant = sim.make_plant(opts)
        stats = sim.write(plant, out, fmt=file_format)
        typer.echo(json.dumps({"out": str(out), **stats.as_dict()}))
        return
    import threading

    from floorsight.demo import stop_on_signals

    if skab is not None:
        from floorsight.simulators.recorded import RecordedPlant

        plant = RecordedPlant.from_skab(skab).shift_to(t0)
        end = plant.end
    else:
        plant = sim.make_plant(opts)
        end = t0 + horizon
    serving = sim.Serving(
        opcua=opcua,
        mqtt=mqtt,
        users={user: _secret(SIM_PASSWORD_ENV, password_file, "--password-file")} if user else None,
        secure=secure,
        cert_dir=cert_dir or config.home() / "pki",
        every_sample=every_sample,
    )
    stop = threading.Event()
    with stop_on_signals(stop, typer.echo, "stopping the simulator ..."):
        sim.serve(plant, serving, t0, speed, end, stop, echo=typer.echo)


def _mqtt_password(
    mqtt: str,
    password_file: Path | None,
    topics: list[str],
    payload_map: Path | None,
    mqtt_format: str,
) -> str | None:
    """Check ``run``'s MQTT options before the start (URL, templates, payload map, format) and
    return the broker password from the environment or the file (None: no password)."""
    from floorsight.pipelines.mqtt_mapping import MappingError, MqttFormatError, decoder_factory
    from floorsight.pipelines.mqtt_receiver import Broker, MqttUrlError

    try:
        Broker.from_url(mqtt)
    except MqttUrlError as e:
        raise typer.BadParameter(str(e), param_hint="--mqtt") from None
    try:
        decoder_factory(mqtt_format, topics, payload_map)
    except (MappingError, MqttFormatError) as e:
        raise typer.BadParameter(str(e)) from None
    try:
        return config.secret(MQTT_PASSWORD_ENV, password_file)
    except config.SecretError as e:
        raise typer.BadParameter(str(e), param_hint="--mqtt-password-file") from None
    except OSError as e:
        raise typer.BadParameter(
            f"cannot read {password_file}: {e.strerror}", param_hint="--mqtt-password-file"
        ) from None


def _cause_of_type(
    error: BaseException, kind: type[BaseException] | tuple[type[BaseException], ...]
) -> BaseException | None:
    """``error`` or the first exception of type ``kind`` (a type or a tuple of them) in its
    chain of causes (Bytewax wraps a step's exception in its own)."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, kind):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


@app.command()
def run(
    context: Annotated[
        str,
        typer.Option(
            help="ERP context: a folder of CSV or Parquet files, a DuckDB file, a postgresql:// "
            "URL, or a mapping file (.toml) of the ERP's own exports (docs/connect.md)."
        ),
    ],
    history: Annotated[
        Path | None,
        typer.Option(help="Readings to replay: a Parquet/CSV file or a folder of them."),
    ] = None,
    opcua: Annotated[
        str | None, typer.Option(help="Or read live from this OPC-UA endpoint (until Ctrl-C).")
    ] = None,
    user: Annotated[
        str | None,
        typer.Option(help=f"OPC-UA: log in as this user; the password from ${OPCUA_PASSWORD_ENV}."),
    ] = None,
    password_file: Annotated[
        Path | None,
        typer.Option(help="OPC-UA: or the password from this file (mode 600)."),
    ] = None,
    tags: Annotated[
        Path | None,
        typer.Option(
            help="OPC-UA: the tag map, a CSV of node_id, machine_id, sensor, unit (draft one "
            "with `floorsight opcua browse`); without it the simulator's nodes are browsed."
        ),
    ] = None,
    security: OpcuaSecurityOption = None,
    cert: OpcuaCertOption = None,
    key: OpcuaKeyOption = None,
    opcua_mode: Annotated[
        str, typer.Option(help="OPC-UA: subscribe (default), or poll every --interval.")
    ] = "subscribe",
    interval: Annotated[
        float, typer.Option(help="OPC-UA poll mode: seconds between reads of every node.")
    ] = 1.0,
    mqtt: Annotated[
        str | None,
        typer.Option(
            help="Or read live from this MQTT broker: mqtt://\\[user@]host:port, mqtts://... "
            f"(TLS), or HOST:PORT; the password from ${MQTT_PASSWORD_ENV}."
        ),
    ] = None,
    mqtt_password_file: Annotated[
        Path | None, typer.Option(help="MQTT: or the password from this file (mode 600).")
    ] = None,
    mqtt_ca: Annotated[
        Path | None, typer.Option(help="MQTT TLS: the CA certificate(s) the broker's is signed by.")
    ] = None,
    mqtt_cert: Annotated[
        Path | None, typer.Option(help="MQTT TLS: a client certificate (PEM), with --mqtt-key.")
    ] = None,
    mqtt_key: Annotated[
        Path | None, typer.Option(help="MQTT TLS: the client certificate's private key (PEM).")
    ] = None,
    topic: Annotated[
        list[str] | None,
        typer.Option(
            help="MQTT: the plant's topics, e.g. 'factory/{line}/{machine_id}/{sensor}' "
            "(placeholders become +; repeat for several)."
        ),
    ] = None,
    payload_map: Annotated[
        Path | None,
        typer.Option(help="MQTT: where value, time, unit, quality sit in the JSON (TOML)."),
    ] = None,
    mqtt_format: Annotated[
        str, typer.Option(help="MQTT payloads: json (floorsight's or mapped) or sparkplug.")
    ] = "json",
    mqtt_share: Annotated[
        str | None,
        typer.Option(help="MQTT: shared subscription group ($share/GROUP/...), a partition each."),
    ] = None,
    db: Annotated[
        Path, typer.Option(help="DuckDB file to write (a folder with --db-layout per-process).")
    ] = Path("var/floorsight.duckdb"),
    db_layout: Annotated[
        str,
        typer.Option(
            help="file: one DuckDB file, written by one worker; per-process: --db is a folder "
            "and process i writes its machines' rows to floorsight.p<i>.duckdb in it "
            "(docs/architecture.md)."
        ),
    ] = "file",
    window_s: Annotated[float, typer.Option(help="Window length in seconds.")] = 10.0,
    batch_rows: Annotated[int, typer.Option(help="Readings per batch.")] = 50_000,
    workers: Annotated[
        int, typer.Option("-w", "--workers", help="Worker threads per process.")
    ] = 1,
    processes: Annotated[int, typer.Option(help="Bytewax processes (a cluster on 127.0.0.1).")] = 1,
    recovery: Annotated[
        Path | None, typer.Option(help="Recovery store: a killed run resumes from it.")
    ] = None,
    snapshot_s: Annotated[float, typer.Option(help="Seconds between recovery snapshots.")] = 2.0,
    process_id: Annotated[
        int | None, typer.Option(help="This process's index in a cluster you start yourself.")
    ] = None,
    addresses: Annotated[
        str | None, typer.Option(help="host:port of every process, ';'-separated.")
    ] = None,
    routing: Annotated[
        Path | None,
        typer.Option(help="Route alerts to people and systems (TOML, see docs/alerts.md)."),
    ] = None,
    champion: Annotated[
        str | None,
        typer.Option(help="Also score with this MLflow model's `champion` version (followed)."),
    ] = None,
    mlflow_uri: Annotated[
        str | None, typer.Option(help="MLflow tracking/registry URI (default: under home).")
    ] = None,
    champion_poll_s: Annotated[
        float, typer.Option(help="Seconds between looks at the champion alias.")
    ] = 10.0,
    time_zone: Annotated[
        str | None,
        typer.Option(
            help="Zone of history timestamps without an offset (IANA name, e.g. Europe/Berlin, "
            "or UTC); without it such files are refused."
        ),
    ] = None,
    max_future_s: Annotated[
        float | None,
        typer.Option(
            help="Live sources: event times more than this many seconds ahead of the wall clock "
            "are dead letters (default 300; raise it for `simulate --speed N`)."
        ),
    ] = None,
    states: Annotated[
        str | None,
        typer.Option(
            help="Machine states: packml (default), machinery (OPC UA MachineryItemState), or a "
            "CSV/TOML file of the plant's own codes and words (docs/connect.md)."
        ),
    ] = None,
    models: Annotated[
        Path | None,
        typer.Option(
            help="TOML file of model settings, one section per model name ([spc], "
            "[capability] ...), and [alerts] for the alert rules (docs/models.md)."
        ),
    ] = None,
    config_file: ConfigFileOption = None,
    retain_days: Annotated[
        list[str] | None,
        typer.Option(
            help="Keep TABLE's rows DAYS behind the newest event time, e.g. all=90 (every "
            "time-series table) features=30; repeatable (docs/reliability.md, Retention)."
        ),
    ] = None,
    metrics_port: Annotated[
        int | None,
        typer.Option(
            help="Serve Prometheus /metrics and /healthz on this port (with --processes P, "
            "process i on PORT+i; docs/operations.md).",
            min=1,
            max=65535,
        ),
    ] = None,
    metrics_address: Annotated[
        str, typer.Option(help="Address the metrics server binds (0.0.0.0: every interface).")
    ] = "127.0.0.1",
    stuck_after_s: Annotated[
        float,
        typer.Option(
            help="/healthz: a live source that delivered nothing this long is stuck.", min=0.1
        ),
    ] = 60.0,
    sink_stuck_after_s: Annotated[
        float,
        typer.Option(
            help="/healthz: database writes failing or unfinished this long fail the sink check.",
            min=0.1,
        ),
    ] = 30.0,
    metrics_linger_s: Annotated[
        float,
        typer.Option(
            help="Keep /metrics up this long after a history's end (or until SIGTERM), so a "
            "scraper gets the final counts.",
            min=0.0,
        ),
    ] = 0.0,
) -> None:
    """Run the pipeline over history files (to their end) or a live OPC-UA server."""
    from floorsight.runner import RecoveryDirError, RunConfig, run_pipeline

    if sum(x is not None for x in (history, opcua, mqtt)) != 1:
        raise typer.BadParameter("give one source: --history, --opcua or --mqtt")
    _check_db_layout(db, db_layout)
    _refuse_password_in_dsn(context, "--context")
    _refuse_credentials_in_uri(mlflow_uri, "--mlflow-uri")
    from floorsight.retention import RetentionError, parse_retain_days

    try:
        parse_retain_days(retain_days or [])
    except RetentionError as e:
        raise typer.BadParameter(str(e), param_hint="--retain-days") from None
    if history is not None:  # a file that is no readings file stops the run before it starts
        from floorsight.pipelines.replay import HistoryError, check_history

        try:
            check_history(history, time_zone)
        except (HistoryError, FileNotFoundError) as e:
            raise typer.BadParameter(str(e), param_hint="--history") from None
    if states is not None:  # a bad states file stops the run before it starts
        from floorsight.pipelines.signals import StatesFileError, load_states

        try:
            load_states(states)
        except StatesFileError as e:
            raise typer.BadParameter(str(e), param_hint="--states") from None
    if models is not None:  # so does a bad models file
        _read_models_file(models)
    if metrics_port is not None and process_id is None and metrics_port + processes - 1 > 65535:
        raise typer.BadParameter(
            f"process {processes - 1} would serve port {metrics_port + processes - 1} "
            "(ports end at 65535)",
            param_hint="--metrics-port",
        )
    mqtt_password = None
    if mqtt is not None and mqtt_share is not None and mqtt_format == "sparkplug":
        # a shared subscription spreads an edge node's messages over the partitions: its births
        # (the aliases) reach one and its data by alias another
        raise typer.BadParameter(
            "Sparkplug needs every message of an edge node in one partition (its birth defines "
            "the aliases its data uses); run it without --mqtt-share",
            param_hint="--mqtt-share",
        )
    if mqtt is not None:
        mqtt_password = _mqtt_password(
            mqtt, mqtt_password_file, topic or [], payload_map, mqtt_format
        )
    cfg = RunConfig(
        mqtt_password=mqtt_password,
        mqtt_password_file=mqtt_password_file,
        mqtt_ca=mqtt_ca,
        mqtt_cert=mqtt_cert,
        mqtt_key=mqtt_key,
        mqtt_topics=topic or [],
        payload_map=payload_map,
        mqtt_format=mqtt_format,
        mqtt_share=mqtt_share,
        history=history,
        opcua=opcua,
        opcua_user=user,
        opcua_password_file=password_file,
        # read here, so a missing or exposed password stops the start; a cluster's child
        # processes read it again from the same variable or file (never from their arguments)
        opcua_password=_secret(OPCUA_PASSWORD_ENV, password_file, "--password-file")
        if user is not None
        else None,
        **opcua_run_fields(opcua, tags, security, cert, key, opcua_mode, interval),
        mqtt=mqtt,
        context=context,
        db=db,
        db_layout=db_layout,
        routing=routing,
        window_s=window_s,
        batch_rows=batch_rows,
        workers=workers,
        processes=processes,
        recovery=recovery,
        snapshot_s=snapshot_s,
        process_id=process_id,
        addresses=addresses.split(";") if addresses else None,
        champion=champion,
        mlflow_uri=mlflow_uri,
        champion_poll_s=champion_poll_s,
        time_zone=time_zone,
        max_future_s=max_future_s,
        states=states,
        models=models,
        config_file=config_file,
        retain_days=retain_days or [],
        metrics_port=metrics_port,
        metrics_address=metrics_address,
        stuck_after_s=stuck_after_s,
        sink_stuck_after_s=sink_stuck_after_s,
        metrics_linger_s=metrics_linger_s,
    )
    from floorsight.alerts.routing import RoutingError
    from floorsight.metrics import MetricsServerError

    try:
        code = run_pipeline(cfg)
    except RecoveryDirError as e:
        raise typer.BadParameter(str(e), param_hint="--recovery") from None
    except MetricsServerError as e:  # the port taken, or an address not of this host
        raise typer.BadParameter(e.strerror, param_hint="--metrics-port") from None
    except RoutingError as e:  # a missing secret, an exposed secret file, a bad rule
        raise typer.BadParameter(str(e), param_hint="--routing") from None
    except FileNotFoundError as e:  # a context path without its files, say
        raise typer.BadParameter(str(e)) from None
    except Exception as e:
        # raised before the start or by a step (Bytewax wraps it): a refused MQTT login or a
        # certificate that does not verify; a refused OPC-UA session or an unknown mapped
        # node; a bad first context load (its file, row and rule), also the suites' verdict
        # (imported only here: the OPC-UA client brings asyncua, which a history run never needs)
        from floorsight.opcua_client import OpcuaConnectError
        from floorsight.pipelines.context import ContextLoadError
        from floorsight.pipelines.mqtt_receiver import MqttConnectError
        from floorsight.pipelines.opcua_tags import TagMapError

        for kinds, hint in (
            (MqttConnectError, "--mqtt"),
            ((OpcuaConnectError, TagMapError), "--opcua"),
            (ContextLoadError, "--context"),
        ):
            cause = _cause_of_type(e, kinds)
            if cause is not None:
                raise typer.BadParameter(str(cause), param_hint=hint) from None
        raise
    if code:
        raise typer.Exit(code)
    if process_id is None:
        typer.echo(f"done: {db}")


notify_app = typer.Typer(
    help="Deliver queued alert notifications (and escalate) beside the pipeline; list and"
    " re-send the parked ones."
)
app.add_typer(notify_app, name="notify")
app.add_typer(opcua_app, name="opcua")  # browse a server into a tag map; the client certificate

_NOTIFY_DB = Annotated[
    Path,
    typer.Option(help="The pipeline's DuckDB file (alert status) or per-process store folder."),
]


@notify_app.callback(invoke_without_command=True)
def notify(
    ctx: typer.Context,
    routing: Annotated[
        Path | None, typer.Option(help="Alert routing file (TOML, see docs/alerts.md).")
    ] = None,
    db: _NOTIFY_DB = Path("var/floorsight.duckdb"),
    once: Annotated[bool, typer.Option(help="One delivery round, then exit.")] = False,
    interval_s: Annotated[float, typer.Option(help="Seconds between delivery rounds.")] = 1.0,
) -> None:
    """Deliver queued alert notifications (and escalate) on their own, beside the pipeline."""
    if ctx.invoked_subcommand is not None:
        return
    from floorsight.alerts.dispatcher import Dispatcher
    from floorsight.alerts.outbox import Outbox, outboxes_of
    from floorsight.alerts.routing import RoutingError, load_routing
    from floorsight.demo import stop_on_signals
    from floorsight.storage import is_partitioned

    if routing is None:
        raise typer.BadParameter("delivery needs --routing (the alert routing file)")
    # a per-process store: one loop per partition file here, each on its own outbox and file
    boxes = _outboxes(db) if is_partitioned(db) else outboxes_of(db)
    try:
        rules = load_routing(routing)
        dispatchers = [Dispatcher(Outbox(box), rules, db_path=f) for f, box in boxes.items()]
    except RoutingError as e:  # also a secret that cannot be read, naming its destination
        raise typer.BadParameter(str(e)) from None
    if not once:
        stop = threading.Event()
        loops = [threading.Thread(target=d.run, args=(stop, interval_s)) for d in dispatchers]
        with stop_on_signals(stop, typer.echo, "stopping delivery ..."):
            for loop in loops:
                loop.start()
            while any(loop.is_alive() for loop in loops):
                for loop in loops:
                    loop.join(timeout=0.5)
    for d in dispatchers:
        report = d.step()
        counts = d.outbox.counts()
        typer.echo(json.dumps({"pending": report.pending, "parked": report.parked, **counts}))


@notify_app.command("parked")
def notify_parked(
    db: _NOTIFY_DB = Path("var/floorsight.duckdb"),
    destination: Annotated[str | None, typer.Option(help="Only this destination.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
) -> None:
    """List the notifications parked as undeliverable (kept until re-sent)."""
    from floorsight.alerts.outbox import Outbox

    parked = [p for box in _outboxes(db).values() for p in Outbox(box).parked(destination)]
    for p in parked:
        if as_json:
            row = {
                "destination": p.destination,
                "key": p.key,
                "attempts": p.attempts,
                "created_at": p.created_at.isoformat(),
                "parked_at": p.parked_at.isoformat(),
                "last_error": p.last_error,
            }
            typer.echo(json.dumps(row))
        else:
            typer.echo(
                f"{p.destination}\t{p.key}\t{p.attempts} attempts"
                f"\tqueued {p.created_at:%Y-%m-%d %H:%M}\tparked {p.parked_at:%Y-%m-%d %H:%M}"
                f"\t{p.last_error}"
            )


@notify_app.command("resend")
def notify_resend(
    key: Annotated[
        str | None, typer.Argument(help="The notification's key (<alert_id>/<event>).")
    ] = None,
    db: _NOTIFY_DB = Path("var/floorsight.duckdb"),
    destination: Annotated[str | None, typer.Option(help="Only this destination.")] = None,
    all_parked: Annotated[
        bool, typer.Option("--all", help="Every parked notification (of --destination).")
    ] = False,
) -> None:
    """Queue parked notifications again; the delivery loop sends them on its next round."""
    from floorsight.alerts.outbox import Outbox

    if (key is None) == (not all_parked):
        raise typer.BadParameter("give a notification KEY or --all")
    n = 0
    for path in _outboxes(db).values():
        box = Outbox(path)
        n += box.resend_all(destination) if all_parked else box.resend(key, destination)
    if not n and not all_parked:
        raise typer.BadParameter(f"no parked notification {key!r}")
    typer.echo(f"re-queued {n} parked notification{'s' if n != 1 else ''}")


dashboard_app = typer.Typer(help="Serve the Streamlit dashboard on a database; manage its users.")
dashboard_users_app = typer.Typer(
    help="The dashboard's users file (bcrypt hashes and roles).", no_args_is_help=True
)
dashboard_app.add_typer(dashboard_users_app, name="users")
app.add_typer(dashboard_app, name="dashboard")

_UsersFile = Annotated[
    Path | None,
    typer.Option(
        "--users",
        help="Users file (default: $FLOORSIGHT_DASHBOARD_USERS, else dashboard_users.yaml in "
        "the floorsight home).",
    ),
]


@dashboard_app.callback(invoke_without_command=True)
def dashboard(
    ctx: typer.Context,
    db: Annotated[
        Path, typer.Option(help="DuckDB file the pipeline writes, or its per-process store folder.")
    ] = Path("var/floorsight.duckdb"),
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8501,
    address: Annotated[
        str,
        typer.Option(help="Address to listen on: 127.0.0.1 (this machine only) or 0.0.0.0 (all)."),
    ] = "127.0.0.1",
    users: _UsersFile = None,
    shift_start: Annotated[
        list[str] | None,
        typer.Option(help="When a shift starts, HH:MM UTC (repeat it; default 06:00 14:00 22:00)."),
    ] = None,
    shift_hours: Annotated[float, typer.Option(help="How long each shift lasts, hours.")] = 8.0,
    config_file: ConfigFileOption = None,
) -> None:
    """Serve the Streamlit dashboard on a database (people sign in with the users file)."""
    if ctx.invoked_subcommand is not None:
        return
    from floorsight.config import SecretError
    from floorsight.dashboards import streamlit_command
    from floorsight.dashboards.oee import ShiftPlan, shift_plan
    from floorsight.dashboards.users import UsersFileError, cookie_key, read_users, users_file

    starts = shift_start or ShiftPlan().start_times
    try:
        plan = shift_plan(starts, shift_hours)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--shift-start/--shift-hours") from None
    path = users_file(users)
    try:
        known = read_users(path)
        cookie_key(path)
    except FileNotFoundError:
        raise typer.BadParameter(
            f"no users file at {path}: create one with "
            "`floorsight dashboard users add NAME --role admin`",
            param_hint="--users",
        ) from None
    except (UsersFileError, SecretError) as exc:
        raise typer.BadParameter(str(exc), param_hint="--users") from None
    if not known:
        raise typer.BadParameter(
            f"{path} has no users: `floorsight dashboard users add NAME --role admin`",
            param_hint="--users",
        )
    typer.echo(
        f"floorsight dashboard: http://{address}:{port}  (users: {path}; {plan.description})"
    )
    if address not in ("127.0.0.1", "localhost", "::1"):
        typer.echo(
            f"  listening on {address}: passwords and the sign-in cookie travel in the clear "
            "over plain HTTP; serve it behind a TLS reverse proxy (docs/dashboard.md)",
            err=True,
        )
    # this process becomes the server: a SIGTERM or Ctrl-C sent to `floorsight dashboard`
    # reaches Streamlit itself (a child it started would outlive it)
    command = streamlit_command(db, port, address, path, starts, shift_hours)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(command[0], command)


def _check_db_layout(db: Path, layout: str) -> None:
    if layout not in ("file", "per-process"):
        raise typer.BadParameter(
            f"{layout!r} is not a layout: file or per-process", param_hint="--db-layout"
        )
    if layout == "file" and db.is_dir():
        raise typer.BadParameter(
            f"{db} is a folder: give a DuckDB file, or --db-layout per-process for a folder of "
            "one file per process",
            param_hint="--db",
        )
    if layout == "per-process" and db.exists() and not db.is_dir():
        raise typer.BadParameter(
            f"{db} is a file: --db-layout per-process takes a folder (one DuckDB file per "
            "process in it)",
            param_hint="--db",
        )


def _outboxes(db: Path) -> dict[Path, Path]:
    """The outboxes of ``db`` (one per partition file of a per-process store) that exist."""
    from floorsight.alerts.outbox import outboxes_of

    found = {f: box for f, box in outboxes_of(db).items() if box.exists()}
    if not found:
        raise typer.BadParameter(f"no alert outbox beside {db}", param_hint="--db")
    return found


def _read_password() -> str:
    """A new password: a hidden prompt (typed twice) at a terminal, else stdin's first line."""
    import sys

    if sys.stdin.isatty():
        return typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    line = sys.stdin.readline()
    return line.removesuffix("\n").removesuffix("\r")


@dashboard_users_app.command("add")
def dashboard_users_add(
    name: Annotated[str, typer.Argument(help="User name (a-z 0-9 . _ -, kept in lower case).")],
    role: Annotated[
        str, typer.Option(help="viewer (reads), engineer (handles alerts) or admin (all).")
    ] = "viewer",
    replace: Annotated[
        bool, typer.Option(help="Set a new password and role for an existing user.")
    ] = False,
    users: _UsersFile = None,
) -> None:
    """Add a user; the password is asked for (hidden) or read from stdin, never an argument."""
    from floorsight.dashboards.users import UsersFileError, add_user, users_file

    path = users_file(users)
    try:
        new = add_user(path, name, _read_password(), role, replace=replace)
    except UsersFileError as exc:
        raise typer.BadParameter(str(exc)) from None
    typer.echo(f"{'added' if new else 'updated'} {name.lower()} ({role}) in {path}")


@dashboard_users_app.command("remove")
def dashboard_users_remove(
    name: Annotated[str, typer.Argument(help="User name.")], users: _UsersFile = None
) -> None:
    """Remove a user (a browser signed in as them is signed out at its next click)."""
    from floorsight.dashboards.users import UsersFileError, remove_user, users_file

    path = users_file(users)
    try:
        remove_user(path, name)
    except UsersFileError as exc:
        raise typer.BadParameter(str(exc)) from None
    typer.echo(f"removed {name} from {path}")


@dashboard_users_app.command("list")
def dashboard_users_list(users: _UsersFile = None) -> None:
    """The users and their roles (never their hashes)."""
    from floorsight.dashboards.users import UsersFileError, read_users, users_file

    path = users_file(users)
    try:
        known = read_users(path)
    except UsersFileError as exc:
        raise typer.BadParameter(str(exc)) from None
    for user in known.values():
        typer.echo(f"{user.username}\t{user.role}")


@app.command()
def replay(
    input_path: Annotated[Path, typer.Argument(metavar="INPUT", help="CSV or Parquet history.")],
    time_col: Annotated[
        str, typer.Option(help="Time column (a time, or a number such as a cycle count).")
    ],
    out: Annotated[Path, typer.Option(help="Output CSV, one row per input row.")],
    entity_col: Annotated[
        str | None,
        typer.Option(help="Entity (machine) column (long layout: machine_id by default)."),
    ] = None,
    label_col: Annotated[
        str | None, typer.Option(help="Label column: adds a progressive-validation prediction.")
    ] = None,
    label_delay: Annotated[
        int, typer.Option(help="Rows of the same entity until a row's label is known.")
    ] = 0,
    label_cap: Annotated[
        float | None,
        typer.Option(
            help="Learn min(label, cap), a label at the cap read as 'the cap or more': the "
            "piece-wise linear target of remaining useful life (C-MAPSS: 125)."
        ),
    ] = None,
    window: Annotated[
        str,
        typer.Option(
            help="Window of the engine: the pipeline's 10s, another duration (500ms, 1min), "
            "or 'row' (each input row one window, for per-row data)."
        ),
    ] = "10s",
    models: Annotated[
        Path | None,
        typer.Option(help="TOML model settings and [alerts], as for `floorsight run --models`."),
    ] = None,
    score_model: Annotated[
        str, typer.Option(help="The registry model whose score is anomaly_score.")
    ] = "anomaly",
    context: Annotated[
        str | None,
        typer.Option(
            help="ERP/CMMS context as for `floorsight run --context` (folder, map.toml, DuckDB "
            "file, postgresql:// URL): work orders joined, spec limits, labs, maintenance."
        ),
    ] = None,
    separator: Annotated[
        str | None, typer.Option(help="CSV separator (default: guessed from the header).")
    ] = None,
    time_zone: Annotated[
        str | None,
        typer.Option(
            help="Zone of time-column values without an offset (IANA name, e.g. Europe/Berlin, "
            "or UTC); without it such a file is refused."
        ),
    ] = None,
    progress: Annotated[
        bool, typer.Option(help="A progress bar on the terminal (default: when it is one).")
    ] = True,
) -> None:
    """Backtest the pipeline's engine (windows, models, alert rules) over a history file.

    Wide files (one column per sensor) and floorsight's long history (machine_id, sensor, ts,
    value) both work; the output has one row per input row (docs/pipeline.md, Backtesting).
    """
    import sys

    import polars as pl

    from floorsight.pipelines.backtest import backtest
    from floorsight.pipelines.replay import utc_times

    settings = _backtest_settings(window, models, score_model, label_cap)
    if not input_path.exists():
        raise typer.BadParameter(f"{input_path} does not exist", param_hint="INPUT")
    try:
        if input_path.suffix == ".parquet":
            frame = pl.read_parquet(input_path)
        else:
            if separator is None:
                with input_path.open(errors="replace") as f:
                    header = f.readline()
                separator = ";" if header.count(";") > header.count(",") else ","
            frame = pl.read_csv(input_path, separator=separator, infer_schema_length=10_000)
    except (pl.exceptions.PolarsError, OSError, UnicodeDecodeError) as e:
        raise typer.BadParameter(f"{input_path}: {e}", param_hint="INPUT") from None
    erp = None
    if context is not None:
        from floorsight.pipelines.context import ContextStore

        _refuse_password_in_dsn(context, "--context")
        try:
            erp = ContextStore(context, settle=timedelta(0)).current()
        except (OSError, ValueError) as e:  # ContextLoadError too
            raise typer.BadParameter(str(e), param_hint="--context") from None
    try:
        # text times in UTC: rows with different offsets are replayed in their true order
        frame = utc_times(frame, time_col, input_path.name, time_zone)
        show = progress and sys.stderr.isatty()
        with _progress_bar(show, f"replay {input_path.name}") as tick:
            result = backtest(
                frame,
                time_col,
                entity_col,
                label_col,
                label_delay,
                settings,
                progress=tick,
                context=erp,
            )
    except ValueError as e:  # HistoryError too: a time cell that is no time
        raise typer.BadParameter(str(e)) from None
    from floorsight.pipelines.backtest import is_long

    if erp is None and is_long(frame) and "work_order" not in frame.columns:
        typer.echo(
            "note: no work orders (--context): the models see one product, so a changeover "
            "looks like an anomaly",
            err=True,
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    result.write_csv(out)
    alerted = int((result["alert"] != "").sum())
    typer.echo(
        f"{result.height} rows -> {out}: {int(result['is_anomaly'].sum())} anomalous, "
        f"{int(result['changepoint'].sum())} changepoints, {alerted} under an alert"
    )


def _read_models_file(path: Path):
    """A ``--models`` file's model sections and ``[alerts]`` hygiene, checked whole (errors
    name the file and the entry, as a usage error of ``--models``)."""
    from floorsight.alerts.hygiene import AlertHygieneError, load_alert_hygiene
    from floorsight.models.registry import ModelSettingsError, model_settings

    try:
        return model_settings(path), load_alert_hygiene(path)
    except (ModelSettingsError, AlertHygieneError) as e:
        raise typer.BadParameter(str(e), param_hint="--models") from None


def _backtest_settings(window: str, models: Path | None, score_model: str, label_cap):
    """The replay's settings from its options (each error names its option)."""
    from floorsight.pipelines.backtest import BacktestSettings, parse_window

    try:
        length = parse_window(window)
    except ValueError as e:
        raise typer.BadParameter(str(e), param_hint="--window") from None
    model_values, hygiene = _read_models_file(models) if models is not None else ({}, None)
    labels = None
    if label_cap is not None:
        from floorsight.models.fleet import LabelSettings

        if not label_cap > 0 or label_cap == float("inf"):
            raise typer.BadParameter("must be a positive number", param_hint="--label-cap")
        labels = LabelSettings(cap=label_cap, censored=True)
    try:
        return BacktestSettings(
            window=length,
            models=model_values,
            score_model=score_model,
            labels=labels,
            hygiene=hygiene,
        )
    except ValueError as e:
        raise typer.BadParameter(str(e)) from None


@contextmanager
def _progress_bar(show: bool, label: str):
    """A rich progress bar fed ``tick(done, total)``; a no-op tick when not shown."""
    if not show:
        yield None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        transient=True,
    ) as bar:
        task = bar.add_task(label, total=None)

        def tick(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield tick


@app.command()
def bench(
    size: Annotated[
        str, typer.Option(help="tiny (seconds, for tests), small, or default (a few minutes).")
    ] = "default",
    machines: Annotated[int | None, typer.Option(help="Machines of the plant.")] = None,
    sensors: Annotated[int | None, typer.Option(help="Sensors per machine (1..20).")] = None,
    seconds: Annotated[
        float | None, typer.Option(help="Plant time of the throughput data, seconds.")
    ] = None,
    batch_rows: Annotated[int | None, typer.Option(help="Readings per source batch.")] = None,
    soak_hours: Annotated[float | None, typer.Option(help="Simulated hours of the soak.")] = None,
    lateness_s: Annotated[
        float | None, typer.Option(help="Allowed lateness of the latency run, seconds.")
    ] = None,
    write_docs: Annotated[
        bool, typer.Option(help="Write the table to docs/performance.md.")
    ] = False,
) -> None:
    """Measure throughput, latency, memory and scaling beside their limits; prints JSON."""
    from dataclasses import replace

    from floorsight.bench import SIZES, run_bench, write_docs_page

    if size not in SIZES:
        raise typer.BadParameter(f"unknown size {size!r}: one of {', '.join(SIZES)}")
    given = {
        "machines": machines,
        "sensors": sensors,
        "seconds": seconds,
        "batch_rows": batch_rows,
        "soak_hours": soak_hours,
        "lateness_s": lateness_s,
    }
    settings = replace(SIZES[size], **{k: v for k, v in given.items() if v is not None})
    result = run_bench(settings)
    if write_docs:
        import sys

        write_docs_page(result, "floorsight " + " ".join(sys.argv[1:]))
    typer.echo(json.dumps(result))


@app.command(name="eval")
def evaluate(
    benchmark: Annotated[str, typer.Argument(help="The benchmark: skab, nab or cmapss.")],
    data: Annotated[
        Path | None,
        typer.Option(help="The benchmark's data folder (default: ../shared/data/BENCHMARK)."),
    ] = None,
    subsets: Annotated[
        str | None,
        typer.Option(help="SKAB: comma-separated folders to score (default: every labelled one)."),
    ] = None,
    files: Annotated[
        str | None,
        typer.Option(help="SKAB: experiments by file number (8-15, 0,3,9); default all."),
    ] = None,
    cap: Annotated[
        float, typer.Option(help="C-MAPSS: the cap of the piece-wise linear RUL target.")
    ] = 125.0,
    folds: Annotated[
        int, typer.Option(help="C-MAPSS without its test set: leave-engines-out folds.")
    ] = 5,
) -> None:
    """Detection and prediction quality on a public benchmark, with its own published protocol,
    through the replay's engine; a summary, then JSON on the last line."""
    if benchmark not in ("skab", "nab", "cmapss"):
        raise typer.BadParameter(f"unknown benchmark {benchmark!r}: skab, nab or cmapss")
    data = data if data is not None else Path("../shared/data") / benchmark
    if not data.is_dir():
        raise typer.BadParameter(f"{data} is no folder", param_hint="--data")
    try:
        if benchmark == "skab":
            from floorsight.evaluation import skab as bench

            chosen = tuple(subsets.split(",")) if subsets else None
            paths = bench.skab_files(data, chosen, bench.parse_stems(files))
            result = bench.evaluate(paths)
        elif benchmark == "nab":
            from floorsight.evaluation import nab as bench

            result = bench.evaluate(data)
        else:
            from floorsight.evaluation import cmapss as bench

            if not cap > 0 or folds < 2:
                raise ValueError("--cap must be positive and --folds at least 2")
            result = bench.evaluate(data, cap=cap, folds=folds)
    except (FileNotFoundError, ValueError) as e:
        raise typer.BadParameter(str(e)) from None
    for line in bench.summary(result):
        typer.echo(line)
    typer.echo(json.dumps(result))


_PipelineDb = Annotated[
    Path, typer.Option(help="The pipeline's DuckDB file (of a per-process store: one partition's).")
]
_LockWait = Annotated[
    float, typer.Option(help="How long to wait for the file's lock (the running sink's).")
]


@app.command()
def export(
    out: Annotated[Path, typer.Option(help="Folder for the copies (<table>.parquet).")],
    db: Annotated[
        Path, typer.Option(help="The pipeline's DuckDB file, or its per-process store folder.")
    ] = Path("var/floorsight.duckdb"),
    table: Annotated[
        list[str] | None, typer.Option(help="A table to copy (repeat it); default: every one.")
    ] = None,
) -> None:
    """Copy tables of the live database to Parquet files, for analyses that take long.

    One short read-only connection copies them all and closes the file: the running pipeline
    waits for that copy only, never for the analysis.
    """
    from floorsight.storage import copy_tables

    if not db.exists():
        raise typer.BadParameter(f"{db} does not exist", param_hint="--db")
    try:
        copies = copy_tables(db, out, table or None)
    except ValueError as e:
        raise typer.BadParameter(str(e), param_hint="--table") from None
    typer.echo(json.dumps({name: str(path) for name, path in copies.items()}))


@app.command()
def compact(
    db: _PipelineDb = Path("var/floorsight.duckdb"),
    wait_s: _LockWait = 60.0,
) -> None:
    """Rewrite the DuckDB file without the space of deleted rows (after retention).

    Safe while the pipeline runs: the copy holds the file's lock, the sink keeps its rows
    meanwhile and writes them into the compacted file. Needs free disk for one more copy of
    the live data. Prints the size before and after and the rows of every table (JSON).
    """
    _copy_database(db, wait_s, None)


def _copy_database(db: Path, wait_s: float, out: Path | None) -> None:
    """``compact`` (out None) or ``backup`` (into ``out``), with their errors as usage errors."""
    from floorsight.retention import CompactionError
    from floorsight.retention import compact as compact_file
    from floorsight.storage import DatabaseLocked

    if wait_s < 0:
        raise typer.BadParameter(f"{wait_s} is negative", param_hint="--wait-s")
    try:
        report = compact_file(db, timeout_s=wait_s, out=out)
    except FileNotFoundError as e:
        raise typer.BadParameter(str(e), param_hint="--db") from None
    except FileExistsError as e:
        raise typer.BadParameter(str(e), param_hint="--out") from None
    except (DatabaseLocked, CompactionError) as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(1) from None
    typer.echo(
        json.dumps(
            {
                "db": str(report.path),
                "mb_before": round(report.bytes_before / 1e6, 2),
                "mb_after": round(report.bytes_after / 1e6, 2),
                "seconds": round(report.seconds, 2),
                "rows": report.rows,
            }
        )
    )


@app.command()
def backup(
    out: Annotated[Path, typer.Option(help="The backup file to write (a new DuckDB file).")],
    db: _PipelineDb = Path("var/floorsight.duckdb"),
    wait_s: _LockWait = 60.0,
) -> None:
    """A consistent copy of the DuckDB file while the pipeline writes (compacted as it goes).

    Opens the file read-only for the copy: dashboards go on reading, the sink keeps its rows
    until the copy is done. Prints the sizes and the rows of every table (JSON).
    """
    _copy_database(db, wait_s, out)


# ---- floorsight models: the MLflow registry and the champion (issue #8) ----

models_app = typer.Typer(
    help="Registered models (MLflow), the champion, and how models compare on recent data.",
    no_args_is_help=True,
)
app.add_typer(models_app, name="models")

_MlflowUri = Annotated[
    str | None,
    typer.Option(
        help="MLflow tracking/registry URI (default: under home).",
        callback=lambda uri: _refuse_credentials_in_uri(uri, "--mlflow-uri"),
    ),
]


@models_app.command("list")
def models_list(mlflow_uri: _MlflowUri = None) -> None:
    """Registered model versions: aliases, decision threshold, horizon, run metrics."""
    import polars as pl

    from floorsight.models.champion import registered_models

    table = registered_models(mlflow_uri)
    if table.height == 0:
        typer.echo("no registered models (train and register one: notebooks/, docs/notebooks.md)")
        return
    with pl.Config(tbl_rows=-1, tbl_cols=-1, fmt_str_lengths=200, tbl_width_chars=200):
        typer.echo(table)


@models_app.command("promote")
def models_promote(
    name: Annotated[str, typer.Argument(help="Registered model name.")],
    version: Annotated[int, typer.Argument(help="Version to make the champion.")],
    mlflow_uri: _MlflowUri = None,
) -> None:
    """Point the `champion` alias at a version; running pipelines switch to it."""
    from floorsight.models.champion import promote

    promote(name, version, mlflow_uri)
    typer.echo(f"{name}@champion -> v{version}")


@models_app.command("compare")
def models_compare(
    db: Annotated[Path, typer.Option(help="DuckDB file the pipeline writes.")] = Path(
        "var/floorsight.duckdb"
    ),
    hours: Annotated[
        float | None, typer.Option(help="Only the newest H hours of scored windows.")
    ] = None,
    horizon_h: Annotated[
        float, typer.Option(help="A window is positive if its machine fails within this.")
    ] = 1.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON lines.")] = False,
) -> None:
    """Champion and online models on recent scored windows, against the maintenance log."""
    import polars as pl

    from floorsight.models.champion import compare_scores
    from floorsight.storage import Database

    database = Database(db)
    if not database.exists():
        raise typer.BadParameter(f"{db} does not exist")
    tables = set(database.query("SHOW TABLES")["name"])
    if "erp_maintenance_log" not in tables:
        raise typer.BadParameter(f"{db} has no erp_maintenance_log (failures): run the pipeline")
    newest = database.query("SELECT max(window_end) AS t FROM scores")["t"][0]
    since = newest - timedelta(hours=hours) if hours is not None and newest else None
    scores = database.query(
        "SELECT * FROM scores WHERE window_end >= coalesce(?, window_end)", [since]
    )
    log = database.query("SELECT * FROM erp_maintenance_log")
    result = compare_scores(scores, log, timedelta(hours=horizon_h))
    if as_json:
        for row in result.iter_rows(named=True):
            typer.echo(json.dumps(row))
        return
    typer.echo(
        f"{scores.height} scored windows from {scores['window_end'].min()} to {newest}; "
        f"positive = failure within {horizon_h:g} h (maintenance_log)"
    )
    with pl.Config(tbl_rows=-1, tbl_cols=-1, tbl_width_chars=200, float_precision=3):
        typer.echo(result)


# ---- floorsight config: the configuration file ----

config_app = typer.Typer(help="The configuration file (TOML, docs/configuration.md).")
app.add_typer(config_app, name="config")


@config_app.command("check")
def config_check(
    file: Annotated[Path, typer.Argument(help="The configuration file (TOML).")],
) -> None:
    """Check a configuration file: OK and what it sets, or each error with its key (exit 2)."""
    from floorsight.settings_file import SettingsFileError

    try:
        loaded = _settings_file(file)
    except SettingsFileError as e:
        for problem in e.problems:
            typer.echo(f"{e.source}: {problem}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"OK: {file}")
    for line in loaded.summary():
        typer.echo(f"  {line}")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
