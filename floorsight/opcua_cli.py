"""``floorsight opcua ...``: draft a tag map by browsing a server, show the client certificate;
and the checks of ``floorsight run``'s OPC-UA options.

``floorsight opcua browse URL --out tags.csv`` walks the server's address space and writes a
row for every numeric variable, for the user to edit and give to ``floorsight run --opcua URL
--tags tags.csv``. Both take the same security options (``--security POLICY,MODE``, ``--cert``,
``--key``, ``--user``, the password from ``$FLOORSIGHT_OPCUA_PASSWORD`` or ``--password-file``).
A refusal by the server (a wrong password, an untrusted certificate, no endpoint with that
security) ends the command with exit code 2 and the server's status.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path
from typing import Annotated

import typer

from floorsight import config

opcua_app = typer.Typer(
    help="OPC-UA: draft a tag map by browsing a server; the client certificate to trust.",
    no_args_is_help=True,
)

_PASSWORD_ENV = "FLOORSIGHT_OPCUA_PASSWORD"
Security = Annotated[
    str | None,
    typer.Option(
        help="OPC-UA security POLICY,MODE: None (default), Basic256Sha256,Sign, "
        "Basic256Sha256,SignAndEncrypt, Aes128Sha256RsaOaep,..., Aes256Sha256RsaPss,..."
    ),
]
Cert = Annotated[
    Path | None,
    typer.Option(
        help="OPC-UA client certificate (DER or PEM), with --key; without them a secure policy "
        "uses the one generated in the floorsight home (`floorsight opcua cert`)."
    ),
]
Key = Annotated[Path | None, typer.Option(help="OPC-UA: the client certificate's private key.")]
User = Annotated[
    str | None,
    typer.Option(help=f"OPC-UA: log in as this user; the password from ${_PASSWORD_ENV}."),
]
PasswordFile = Annotated[
    Path | None, typer.Option(help="OPC-UA: or the password from this file (mode 600).")
]


def security_options(
    security: str | None,
    cert: Path | None,
    key: Path | None,
    user: str | None,
    password_file: Path | None,
):
    """The :class:`OpcuaSecurity` of the options, or a usage error naming the option."""
    from floorsight.opcua_client import OpcuaSecurity

    for option, path in (("--cert", cert), ("--key", key)):
        if path is not None and not path.is_file():
            raise typer.BadParameter(f"{path} is not a file", param_hint=option)
    if key is not None:
        exposed = config.exposed_file(key)
        if exposed:
            raise typer.BadParameter(exposed, param_hint="--key")
    try:
        return OpcuaSecurity.from_options(security, cert, key, user, password_file)
    except config.SecretError as e:
        raise typer.BadParameter(str(e), param_hint="--password-file") from None
    except OSError as e:
        raise typer.BadParameter(f"cannot read {e.filename}: {e.strerror}") from None
    except ValueError as e:
        hint = "--cert/--key" if "--cert" in str(e) else "--security"
        raise typer.BadParameter(str(e), param_hint=hint) from None


def run_fields(
    opcua: str | None,
    tags: Path | None,
    security: str | None,
    cert: Path | None,
    key: Path | None,
    mode: str,
    interval: float,
) -> dict:
    """``floorsight run``'s OPC-UA settings for its ``RunConfig``, each checked before the run
    starts (the tag map read whole, the security parsed, the client certificate made)."""
    given = {"--tags": tags, "--security": security, "--cert": cert, "--key": key}
    if opcua is None:
        stray = [name for name, value in given.items() if value is not None]
        if stray or mode != "subscribe":
            raise typer.BadParameter(f"{(stray or ['--opcua-mode'])[0]} needs --opcua URL")
        return {}
    from floorsight.pipelines.opcua_source import MODES
    from floorsight.pipelines.opcua_tags import TagMapError, read_tag_map

    if mode not in MODES:
        raise typer.BadParameter(f"{mode!r}: one of {', '.join(MODES)}", param_hint="--opcua-mode")
    if not interval > 0:
        raise typer.BadParameter("give a number of seconds above 0", param_hint="--interval")
    if tags is not None:
        try:
            read_tag_map(tags)
        except (TagMapError, UnicodeDecodeError) as e:
            raise typer.BadParameter(str(e), param_hint="--tags") from None
        except OSError as e:
            raise typer.BadParameter(
                f"cannot read {tags}: {e.strerror}", param_hint="--tags"
            ) from None
    # the login is checked by run itself (its password is read there); here the rest, and a
    # generated certificate is made once, before a cluster's processes look for it
    security_options(security, cert, key, None, None)
    return {
        "opcua_tags": tags,
        "opcua_security": security,
        "opcua_cert": cert,
        "opcua_key": key,
        "opcua_mode": mode,
        "opcua_interval_s": interval,
    }


@opcua_app.command()
def browse(
    url: Annotated[str, typer.Argument(help="The server's endpoint, opc.tcp://host:port/path.")],
    out: Annotated[
        Path | None, typer.Option(help="Write the tag-map draft here (else to stdout).")
    ] = None,
    security: Security = None,
    cert: Cert = None,
    key: Key = None,
    user: User = None,
    password_file: PasswordFile = None,
    max_depth: Annotated[int, typer.Option(help="Levels of objects below Objects.")] = 8,
    max_nodes: Annotated[int, typer.Option(help="Objects browsed at most.")] = 20_000,
    timeout_s: Annotated[float, typer.Option(help="Seconds a request may take.")] = 10.0,
) -> None:
    """Draft a tag map: a row for every numeric variable below Objects, machine and sensor from
    the browse path, unit from EngineeringUnits, signals (state, good/scrap counts) by name."""
    from floorsight.opcua_client import OpcuaConnectError, opcua_session
    from floorsight.pipelines.opcua_tags import browse_tags, write_tag_map

    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    logging.getLogger("floorsight").setLevel(logging.INFO)
    logging.getLogger("asyncua").setLevel(logging.ERROR)  # its service faults: ours say more
    sec = security_options(security, cert, key, user, password_file)

    async def walk():
        async with opcua_session(url, sec, timeout_s, closed_is_refusal=True) as client:
            return await browse_tags(client, max_depth=max_depth, max_nodes=max_nodes)

    try:
        result = asyncio.run(walk())
    except OpcuaConnectError as e:  # retrying cannot help: say why and what to do
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None
    except (OSError, TimeoutError) as e:
        typer.echo(
            f"error: cannot reach {url} ({type(e).__name__}: {e}): is the server running, and "
            "the URL's host and port right?",
            err=True,
        )
        raise typer.Exit(1) from None
    text = write_tag_map(result.tags)
    if out is not None:
        out.write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    stopped = f", stopped at --max-nodes {max_nodes}" if result.truncated else ""
    where = str(out) if out is not None else "stdout"
    typer.echo(
        f"{len(result.tags)} tags from {result.visited} objects browsed{stopped}: {where}. Edit "
        "machine_id, sensor, unit (and scale, offset, min, max, kind), then: floorsight run "
        f"--opcua {url} --tags {out or 'tags.csv'} --context ...",
        err=True,
    )


@opcua_app.command()
def cert() -> None:
    """The client certificate a secure policy uses without --cert (made now if absent): its
    path and SHA-1 thumbprint, to trust it on the server."""
    from floorsight.opcua_client import ensure_client_certificate

    made = ensure_client_certificate()
    typer.echo(f"certificate: {made.cert}")
    typer.echo(f"private key: {made.key}")
    typer.echo(f"thumbprint (SHA-1): {made.thumbprint}")
    typer.echo(f"application URI: {made.application_uri}")
