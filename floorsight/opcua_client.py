"""OPC-UA client sessions for every floorsight command: security, certificates, login, errors.

``floorsight opcua browse``, the OPC-UA source of ``floorsight run`` and the alert write-back
all open their sessions here, with one :class:`OpcuaSecurity` built from the same options
(``--security POLICY,MODE --cert --key --user --password-file``; the password from
``$FLOORSIGHT_OPCUA_PASSWORD`` or the file, never from the command line).

A security policy other than ``None`` needs a client certificate. Without ``--cert/--key``,
:func:`ensure_client_certificate` generates one on first use into ``<home>/opcua`` (RSA 2048,
self-signed, the application URI and host name in its subjectAltName, as OPC UA Part 6 and
strict servers such as node-opcua require) and logs its path and SHA-1 thumbprint, so the user
can trust it on the server. A given certificate's application URI (its subjectAltName URI) is
the client's ``application_uri``, as servers check.

:func:`connect` turns what a server refuses into an :class:`OpcuaConnectError` naming the
status code and saying what to do (refused login, no endpoint with the requested security, a
rejected certificate, ...): those are permanent, retrying cannot help. A refused TCP connection,
a timeout or a dropped channel stays the original ``OSError``/``TimeoutError``; callers retry
those with backoff (:func:`connect_retrying`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import socket
import threading
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from asyncua import Client, ua
from asyncua.crypto import security_policies
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from floorsight import config

log = logging.getLogger(__name__)

#: environment variable holding the OPC-UA login's password
PASSWORD_ENV = "FLOORSIGHT_OPCUA_PASSWORD"

#: security policies asyncua implements, by their OPC UA name
POLICIES: tuple[str, ...] = tuple(
    name.removeprefix("SecurityPolicy")
    for name in dir(security_policies)
    if name.startswith("SecurityPolicy")
    and name not in ("SecurityPolicy", "SecurityPolicyFactory")
    and isinstance(getattr(security_policies, name), type)
)
MODES: tuple[str, ...] = ("None", "Sign", "SignAndEncrypt")

#: statuses after which retrying the same connection cannot succeed, with what to do
_PERMANENT: dict[str, str] = {
    "BadUserAccessDenied": "the server refused the login: check --user and the password "
    f"(${PASSWORD_ENV} or --password-file)",
    "BadIdentityTokenInvalid": "the server does not accept this kind of login: give --user "
    f"NAME (password from ${PASSWORD_ENV} or --password-file), or check the user on the server",
    "BadIdentityTokenRejected": "the server rejected the login token: check --user, the "
    "password and that the endpoint's security policy allows a user name login",
    "BadSecurityChecksFailed": "the server rejected the client certificate: trust it on the "
    "server (copy it into the server's trusted certificates folder), then run again",
    "BadCertificateUntrusted": "the server does not trust the client certificate: copy it into "
    "the server's trusted certificates folder, then run again",
    "BadCertificateInvalid": "the server finds the client certificate invalid: check --cert "
    "(or delete the generated one so that a new one is made)",
    "BadCertificateTimeInvalid": "the client certificate is expired or not yet valid: renew it "
    "(delete the generated one so that a new one is made)",
    "BadCertificateUriInvalid": "the client certificate's application URI (subjectAltName URI) "
    "is not what the client sends: use a certificate made for this client",
    "BadCertificateUseNotAllowed": "the client certificate's key usage does not allow this use: "
    "use a certificate with digitalSignature, keyEncipherment, clientAuth",
    "BadCertificateRevoked": "the client certificate is revoked on the server: make and trust a "
    "new one",
    "BadCertificateHostNameInvalid": "the certificate's host name does not match: use a "
    "certificate for this host",
    "BadSecurityPolicyRejected": "the server does not offer this security policy: give "
    "--security with one it offers",
    "BadSecurityModeRejected": "the server does not offer this security mode: give --security "
    "with one it offers",
    "BadApplicationSignatureInvalid": "the server could not verify the client's signature: "
    "check that --key belongs to --cert",
    "BadNoValidCertificates": "the server has no certificate for this policy: give --security "
    "with another policy",
    "BadTcpEndpointUrlInvalid": "the server does not know this endpoint URL: check the URL's path",
    "BadServerUriInvalid": "the server URI is invalid: check the endpoint URL",
    "BadTooManySessions": "the server has no room for another session: close other clients",
    "BadNodeIdUnknown": "the server does not know this node id: correct it in the tag map",
}


class OpcuaConnectError(Exception):
    """A connection the server refused for good: its status (``BadUserAccessDenied
    (0x801F0000)``) and what to do. Retrying the same settings cannot succeed."""

    def __init__(self, url: str, status: str | None, advice: str) -> None:
        self.url = url
        self.status = status
        self.advice = advice
        where = f"{url}: {status}" if status else url
        super().__init__(f"{where}: {advice}")


@dataclass(frozen=True)
class ClientCertificate:
    """The client's application instance certificate and where it lives."""

    cert: Path  # DER
    key: Path  # PEM, mode 0600
    thumbprint: str  # SHA-1 of the DER, hex upper case (as servers list trusted certificates)
    application_uri: str


@dataclass(frozen=True)
class OpcuaSecurity:
    """How a client secures its channel and logs in."""

    policy: str = "None"  # None | Basic256Sha256 | Aes128Sha256RsaOaep | Aes256Sha256RsaPss | ...
    mode: str = "None"  # None | Sign | SignAndEncrypt
    cert: Path | None = None  # the client certificate (DER or PEM)
    key: Path | None = None  # its private key (PEM or DER)
    user: str | None = None
    password: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.policy not in POLICIES:
            raise ValueError(
                f"unknown security policy {self.policy!r}: one of {', '.join(POLICIES)}"
            )
        if self.mode not in MODES:
            raise ValueError(f"unknown security mode {self.mode!r}: one of {', '.join(MODES)}")
        if (self.policy == "None") != (self.mode == "None"):
            raise ValueError(
                f"security {self.policy},{self.mode}: policy None goes with mode None only, "
                "and a policy with Sign or SignAndEncrypt"
            )
        if (self.cert is None) != (self.key is None):
            raise ValueError("give both --cert and --key (or neither, to use the generated pair)")

    @property
    def secure(self) -> bool:
        return self.policy != "None"

    @classmethod
    def from_options(
        cls,
        security: str | None = None,
        cert: Path | None = None,
        key: Path | None = None,
        user: str | None = None,
        password_file: Path | None = None,
        *,
        home: Path | None = None,
    ) -> OpcuaSecurity:
        """The security of the command-line options: ``security`` is ``POLICY,MODE`` (or
        ``None``); the password (with a ``user``) from ``$FLOORSIGHT_OPCUA_PASSWORD`` or
        ``password_file`` (a private file). A secure policy without ``cert``/``key`` uses the
        certificate generated in the floorsight home (made on first use).

        Raises ``ValueError`` (a bad option, naming it) or ``config.SecretError``.
        """
        policy, mode = _parse_security(security)
        password = None
        if user is not None:
            password = config.secret(PASSWORD_ENV, password_file, required=True)
        if policy != "None" and cert is None and key is None:
            generated = ensure_client_certificate(home)
            cert, key = generated.cert, generated.key
        return cls(policy, mode, cert, key, user, password)


def _parse_security(text: str | None) -> tuple[str, str]:
    if text is None or text.strip() in ("", "None", "None,None"):
        return "None", "None"
    parts = [p.strip() for p in text.split(",")]
    if len(parts) != 2:
        raise ValueError(
            f"--security {text!r}: give POLICY,MODE, e.g. Basic256Sha256,SignAndEncrypt "
            f"(policies: {', '.join(POLICIES)}; modes: Sign, SignAndEncrypt)"
        )
    by_lower = {p.lower(): p for p in POLICIES} | {m.lower(): m for m in MODES}
    policy = by_lower.get(parts[0].lower(), parts[0])
    mode = by_lower.get(parts[1].lower(), parts[1])
    if policy not in POLICIES:
        raise ValueError(f"--security: unknown policy {parts[0]!r}: one of {', '.join(POLICIES)}")
    if mode not in MODES:
        raise ValueError(f"--security: unknown mode {parts[1]!r}: one of Sign, SignAndEncrypt")
    return policy, mode


# -- certificates ----------------------------------------------------------------------------


def default_application_uri() -> str:
    """The application URI of the generated certificate: unique per host, as OPC UA asks."""
    return f"urn:{socket.gethostname()}:floorsight:client"


def ensure_client_certificate(home: Path | None = None) -> ClientCertificate:
    """The client certificate in ``<home>/opcua`` (``client_cert.der``, ``client_key.pem``),
    generated on first use (or when expired), its path and thumbprint logged at WARNING the
    first time so the user can trust it on the server."""
    folder = config.private_dir((home or config.home()) / "opcua")
    cert_path, key_path = folder / "client_cert.der", folder / "client_key.pem"
    if cert_path.exists() and key_path.exists():
        cert = _load_cert(cert_path)
        if cert.not_valid_after_utc > datetime.now(tz=UTC) + timedelta(days=1):
            return _describe(cert_path, key_path, cert)
    uri = default_application_uri()
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cert = _self_signed(key, uri)
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    key_path.chmod(0o600)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.DER))
    made = _describe(cert_path, key_path, cert)
    log.warning(
        "generated the OPC-UA client certificate %s (SHA-1 thumbprint %s, application URI %s): "
        "trust it on the server, e.g. copy it into the server's trusted certificates folder",
        cert_path,
        made.thumbprint,
        uri,
    )
    return made


def _self_signed(key: rsa.RSAPrivateKey, uri: str) -> x509.Certificate:
    host = socket.gethostname()
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, "floorsight"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "floorsight"),
        ]
    )
    now = datetime.now(tz=UTC)
    public = key.public_key()
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=3 * 365))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.UniformResourceIdentifier(uri), x509.DNSName(host), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=True,
                key_encipherment=True,
                data_encipherment=True,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH]
            ),
            critical=False,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )


def _load_cert(path: Path) -> x509.Certificate:
    data = path.read_bytes()
    if b"-----BEGIN" in data:
        return x509.load_pem_x509_certificate(data)
    return x509.load_der_x509_certificate(data)


def _describe(cert_path: Path, key_path: Path, cert: x509.Certificate) -> ClientCertificate:
    return ClientCertificate(
        cert_path, key_path, thumbprint(cert), certificate_application_uri(cert) or ""
    )


def thumbprint(cert: x509.Certificate) -> str:
    """SHA-1 of the certificate's DER, hex upper case (what servers show and file it under)."""
    return hashlib.sha1(cert.public_bytes(serialization.Encoding.DER)).hexdigest().upper()


def certificate_application_uri(cert: x509.Certificate) -> str | None:
    """The URI in the certificate's subjectAltName (its OPC UA application URI), or None."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None
    uris = san.get_values_for_type(x509.UniformResourceIdentifier)
    return uris[0] if uris else None


# -- sessions ---------------------------------------------------------------------------------


def status_text(code: int) -> str:
    """``BadUserAccessDenied (0x801F0000)`` for a status code."""
    name = _STATUS_NAMES.get(code & 0xFFFF0000, "unknown status")
    return f"{name} (0x{code & 0xFFFFFFFF:08X})"


_STATUS_NAMES = {
    code: name
    for name, code in vars(ua.StatusCodes).items()
    if isinstance(code, int) and not name.startswith("_")
}


def permanent_error(url: str, exc: BaseException) -> OpcuaConnectError | None:
    """The permanent refusal ``exc`` is (an :class:`OpcuaConnectError`), or None when it is a
    transient failure (refused TCP, timeout, dropped channel) worth retrying."""
    if isinstance(exc, OpcuaConnectError):
        return exc
    for error in _chain(exc):
        if isinstance(error, ua.UaStatusCodeError) and not isinstance(error, ua.UaStatusCodeErrors):
            code = error.code
            name = _STATUS_NAMES.get(code & 0xFFFF0000, "")
            if name in _PERMANENT:
                return OpcuaConnectError(url, status_text(code), _PERMANENT[name])
        if isinstance(error, ua.UaError) and "No matching endpoints" in str(error):
            return OpcuaConnectError(
                url,
                None,
                f"no endpoint offers this security ({error}); give --security with "
                "one the server offers",
            )
        if isinstance(error, socket.gaierror):
            return OpcuaConnectError(url, None, f"unknown host ({error}): check the URL")
    return None


def _chain(exc: BaseException) -> list[BaseException]:
    out, seen = [], set()
    stack = [exc]
    while stack:
        error = stack.pop()
        if error is None or id(error) in seen:
            continue
        seen.add(id(error))
        out.append(error)
        if isinstance(error, BaseExceptionGroup):
            stack.extend(error.exceptions)
        stack.extend([error.__cause__, error.__context__])
    return out


async def _offered(url: str, timeout: float) -> str:
    """The server's endpoints as ``Policy,Mode`` pairs, for a message; empty when unknown."""
    probe = Client(url, timeout=timeout)
    try:
        endpoints = await probe.connect_and_get_server_endpoints()
    except Exception:
        return ""
    pairs = []
    for ep in endpoints:
        policy = ep.SecurityPolicyUri.rpartition("#")[2] or "None"
        pair = f"{policy},{ep.SecurityMode.name}" if policy != "None" else "None"
        if pair not in pairs:
            pairs.append(pair)
    return "; ".join(pairs)


async def connect(
    url: str, security: OpcuaSecurity, timeout: float = 4, *, closed_is_refusal: bool = False
) -> Client:
    """A connected asyncua client with ``security``; the caller disconnects it.

    Raises :class:`OpcuaConnectError` for a refusal that retrying cannot cure; a transient
    failure stays the original exception (``OSError``, ``TimeoutError``, ``ConnectionError``).
    With ``closed_is_refusal`` (a first connection, a command's own), a server that lists its
    endpoints and then closes the secure channel without a status, as node-opcua does for a
    client certificate it does not trust, is such a refusal too.
    """
    client = Client(url, timeout=timeout)
    reached = False  # the server answered GetEndpoints: it is up, at this address
    if security.user is not None:
        client.set_user(security.user)
        client.set_password(security.password or "")
    try:
        if security.secure:
            assert security.cert is not None and security.key is not None
            cert = _load_cert(security.cert)
            uri = certificate_application_uri(cert)
            if uri is None:
                raise OpcuaConnectError(
                    url,
                    None,
                    f"the certificate {security.cert} has no application URI (a URI in its "
                    "subjectAltName), which servers require: use one that has",
                )
            client.application_uri = uri
            await client.set_security(
                getattr(security_policies, f"SecurityPolicy{security.policy}"),
                str(security.cert),
                str(security.key),
                mode=getattr(ua.MessageSecurityMode, security.mode),
            )
            reached = True
        await client.connect()
    except Exception as e:
        with contextlib.suppress(Exception):
            await client.disconnect()
        error = permanent_error(url, e)
        closed = isinstance(e, ConnectionError) and not isinstance(e, ConnectionRefusedError)
        if error is None and closed and reached and closed_is_refusal:
            error = _untrusted(url, security)
        if error is None:
            raise
        if security.user is None and (error.status or "").startswith("BadIdentityToken"):
            error = OpcuaConnectError(
                url,
                error.status,
                f"the server wants a login: give --user NAME (the password from ${PASSWORD_ENV} "
                "or --password-file)",
            )
        rejected = ("BadSecurityModeRejected", "BadSecurityPolicyRejected")
        if (error.status is None or error.status.startswith(rejected)) and (
            "security" in error.advice
        ):
            offered = await _offered(url, timeout)
            if offered:
                error = OpcuaConnectError(
                    url,
                    error.status,
                    f"the server offers no endpoint with security {security.policy},"
                    f"{security.mode}; it offers: {offered}. Give --security with one of them",
                )
        raise error from e
    return client


def _untrusted(url: str, security: OpcuaSecurity) -> OpcuaConnectError:
    which = f"{security.cert}"
    with contextlib.suppress(Exception):
        assert security.cert is not None
        which += f" (SHA-1 thumbprint {thumbprint(_load_cert(security.cert))})"
    return OpcuaConnectError(
        url,
        None,
        f"the server closed the secure channel ({security.policy},{security.mode}) without a "
        "status, as servers do for a client certificate they do not trust: trust the client "
        f"certificate {which} on the server (copy it into its trusted certificates folder, or "
        "move it there from its rejected ones), then run again",
    )


@contextlib.asynccontextmanager
async def opcua_session(
    url: str, security: OpcuaSecurity, timeout: float = 4, *, closed_is_refusal: bool = False
) -> AsyncIterator[Client]:
    """``async with opcua_session(url, security) as client:``: :func:`connect`, then disconnect."""
    client = await connect(url, security, timeout, closed_is_refusal=closed_is_refusal)
    try:
        yield client
    finally:
        with contextlib.suppress(Exception):
            await client.disconnect()


async def connect_retrying(
    url: str,
    security: OpcuaSecurity,
    *,
    stop: threading.Event | None = None,
    timeout: float = 4,
    first_backoff: float = 0.2,
    max_backoff: float = 5.0,
) -> Client | None:
    """:func:`connect`, retrying transient failures with exponential backoff (each logged as a
    WARNING); a permanent refusal raises :class:`OpcuaConnectError`. None when ``stop`` is set
    before a connection is made."""
    backoff = first_backoff
    while stop is None or not stop.is_set():
        try:
            return await connect(url, security, timeout)
        except OpcuaConnectError:
            raise
        except Exception as e:
            log.warning(
                "%s: cannot connect (%s: %s); retrying in %.1f s",
                url,
                type(e).__name__,
                e,
                backoff,
            )
        await asyncio.sleep(backoff)
        backoff = min(backoff * 2, max_backoff)
    return None


# -- node ids ---------------------------------------------------------------------------------


def parse_node_id(text: str) -> ua.NodeId:
    """A node id from its standard text form (``nsu=urn:x;s=Foo``, ``ns=2;i=5``, ``i=85``).

    Raises ``ValueError`` naming the text."""
    try:
        node_id = ua.NodeId.from_string(text.strip())
    except Exception as e:
        raise ValueError(f"{text!r} is no OPC-UA node id (e.g. nsu=urn:plant;s=Line1.Temp)") from e
    if isinstance(node_id, ua.ExpandedNodeId) and node_id.ServerIndex:
        raise ValueError(f"{text!r}: a node id on another server (srv=) is not supported")
    return node_id


def resolve(node_id: ua.NodeId, namespaces: list[str]) -> ua.NodeId:
    """``node_id`` with its namespace URI (``nsu=``) turned into the server's current index.

    Raises ``ValueError`` when the server has no such namespace."""
    uri = getattr(node_id, "NamespaceUri", None)
    if not uri:
        return ua.NodeId(node_id.Identifier, node_id.NamespaceIndex, node_id.NodeIdType)
    try:
        index = namespaces.index(uri)
    except ValueError:
        raise ValueError(
            f"the server has no namespace {uri!r} (it has: {', '.join(namespaces)})"
        ) from None
    return ua.NodeId(node_id.Identifier, index, node_id.NodeIdType)


def node_id_text(node_id: ua.NodeId, namespaces: list[str]) -> str:
    """The text form of a node id with its namespace by URI (``nsu=...;s=...``); namespace 0
    (the OPC UA standard's own) keeps no prefix."""
    plain = ua.NodeId(node_id.Identifier, 0, node_id.NodeIdType).to_string()
    index = node_id.NamespaceIndex
    if index == 0:
        return plain
    if index < len(namespaces):
        return f"nsu={namespaces[index]};{plain}"
    return node_id.to_string()


# -- one-shot writes (the alert write-back) ---------------------------------------------------


async def write_values_async(
    url: str, security: OpcuaSecurity, writes: Mapping[str, object], timeout: float = 4
) -> None:
    """Write each ``{node id text: value}`` in one session, each value as the node's own data
    type (a hold flag to a Boolean, alarm text to a String, a code to an Int32 ...).

    Raises :class:`OpcuaConnectError` (a refusal, an unknown node or a write the server
    refused, with its status), ``ValueError`` (a bad node id or value), or a transient
    failure's own exception."""
    async with opcua_session(url, security, timeout) as client:
        namespaces = await client.get_namespace_array()
        for text, value in writes.items():
            node = client.get_node(resolve(parse_node_id(text), namespaces))
            try:
                variant_type = await node.read_data_type_as_variant_type()
                await node.write_value(ua.DataValue(ua.Variant(value, variant_type)))
            except ua.UaStatusCodeError as e:
                raise OpcuaConnectError(
                    url,
                    status_text(e.code),
                    f"writing {value!r} to {text} was refused: check the node id and that the "
                    "user may write it",
                ) from e


def write_values(
    url: str, security: OpcuaSecurity, writes: Mapping[str, object], timeout: float = 4
) -> None:
    """:func:`write_values_async` from synchronous code (its own event loop)."""
    asyncio.run(write_values_async(url, security, writes, timeout))
