"""Who may use the dashboard: the users file, the roles and what each may do, the cookie key.

Plain code, no Streamlit: ``floorsight dashboard users add`` writes the file and the app's
sign-in (``dashboards/auth.py``, streamlit-authenticator) reads it. The file is YAML in
streamlit-authenticator's credentials layout, one entry per user::

    credentials:
      usernames:
        maria:
          name: maria
          password: $2b$12$...   # bcrypt hash, never the password itself
          roles: [engineer]

Rules the reader enforces, so a mistake is a clear message instead of a weaker login:

- the file must be private to its owner (no group or other permission bits), like
  ``floorsight.config.secret``'s files: it holds password hashes, which can be attacked offline;
- every password is a bcrypt hash: a plaintext password is refused (naming the user), never
  hashed silently, because it has already been on disk in the clear and must be changed;
- every role is one of :data:`ROLES`.

The cookie that keeps a browser signed in is signed with a key from
``FLOORSIGHT_DASHBOARD_COOKIE_KEY``, else from ``dashboard_cookie_key`` beside the users file,
generated (private) on first use.
"""

from __future__ import annotations

import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

import bcrypt
import yaml

from floorsight import config

#: Roles from least to most privileged.
ROLES = ("viewer", "engineer", "admin")
#: What people do with an alert (``floorsight.alerts.lifecycle``).
ALERT_ACTIONS = ("acknowledge", "resolve", "comment", "reopen")
#: What each role may do beyond reading: a viewer only reads; an engineer handles alerts; an
#: admin also re-sends notifications that were parked as undeliverable.
PERMISSIONS: dict[str, frozenset[str]] = {
    "viewer": frozenset(),
    "engineer": frozenset(ALERT_ACTIONS),
    "admin": frozenset({*ALERT_ACTIONS, "resend"}),
}
USERS_ENV = "FLOORSIGHT_DASHBOARD_USERS"
COOKIE_KEY_ENV = "FLOORSIGHT_DASHBOARD_COOKIE_KEY"
COOKIE_KEY_FILE = "dashboard_cookie_key"
#: streamlit-authenticator lower-cases the name typed at sign-in, so names are lower case.
USERNAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
#: bcrypt uses at most 72 bytes of a password (bcrypt 5 refuses longer ones).
PASSWORD_BYTES = (8, 72)
_BCRYPT = re.compile(r"^\$2[aby]\$\d+\$.{53}$")  # streamlit_authenticator's Hasher.is_hash
MIN_COOKIE_KEY = 32


class UsersFileError(ValueError):
    """A users file that cannot be used as it is; the message says what to do."""


@dataclass(frozen=True)
class User:
    """A signed-in person: the name every action of theirs is recorded under, and their role."""

    username: str
    name: str
    role: str

    def may(self, action: str) -> bool:
        return action in PERMISSIONS[self.role]


def users_file(path: Path | str | None = None) -> Path:
    """``path``, else ``FLOORSIGHT_DASHBOARD_USERS``, else ``dashboard_users.yaml`` in the
    floorsight home folder."""
    chosen = path or os.environ.get(USERS_ENV) or config.home() / "dashboard_users.yaml"
    return Path(chosen).expanduser()


def hash_password(password: str, rounds: int = 12) -> str:
    """A bcrypt hash of ``password`` (cost 12 by default, as streamlit-authenticator's
    ``Hasher.hash``, which checks it at sign-in with ``bcrypt.checkpw``)."""
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds)).decode()


def check_password(password: str) -> str:
    """``password`` if it can be used, else :class:`UsersFileError` saying why.

    The sign-in form strips surrounding spaces from what is typed, so such a password could
    never be typed back; bcrypt uses 72 bytes at most.
    """
    low, high = PASSWORD_BYTES
    if password != password.strip():
        raise UsersFileError("a password cannot start or end with a space")
    if not low <= len(password.encode()) <= high:
        raise UsersFileError(f"a password has {low} to {high} bytes")
    return password


def read_users(path: Path | str) -> dict[str, User]:
    """The users of a users file, checked (see the module docstring); raises
    :class:`UsersFileError` with what to do, or ``FileNotFoundError`` with the path."""
    return {name: user for name, (user, _) in _entries(Path(path)).items()}


def credentials(path: Path | str) -> dict:
    """The checked users file as streamlit-authenticator's ``credentials`` dict (a fresh copy:
    the library writes login state into it)."""
    return {
        "usernames": {
            name: {"name": user.name, "password": hashed, "roles": [user.role]}
            for name, (user, hashed) in _entries(Path(path)).items()
        }
    }


def add_user(
    path: Path | str, username: str, password: str, role: str, *, replace: bool = False
) -> bool:
    """Add ``username`` (or, with ``replace``, set a new password and role); returns True if
    the user is new. Writes the file private to its owner, whole (a temporary file renamed).
    The name is kept in lower case, as the sign-in form reads it."""
    path, username = Path(path), username.lower()
    if not USERNAME.fullmatch(username):
        raise UsersFileError(
            f"user name {username!r}: 1 to 64 of a-z 0-9 . _ -, starting with a letter or digit"
        )
    if role not in ROLES:
        raise UsersFileError(f"role {role!r}: one of {', '.join(ROLES)}")
    check_password(password)
    raw = _raw(path) if path.exists() else {"credentials": {"usernames": {}}}
    users = raw["credentials"]["usernames"]
    if username in users and not replace:
        raise UsersFileError(f"{username} is already in {path} (give --replace to change it)")
    new = username not in users
    users[username] = {"name": username, "password": hash_password(password), "roles": [role]}
    _write(path, raw)
    return new


def remove_user(path: Path | str, username: str) -> None:
    path = Path(path)
    raw = _raw(path)
    if raw["credentials"]["usernames"].pop(username, None) is None:
        raise UsersFileError(f"{username} is not in {path}")
    _write(path, raw)


def cookie_key(path: Path | str) -> str:
    """The key that signs the sign-in cookie: ``FLOORSIGHT_DASHBOARD_COOKIE_KEY``, else the
    private file ``dashboard_cookie_key`` beside the users file, generated on first use."""
    file = Path(path).with_name(COOKIE_KEY_FILE)
    if not os.environ.get(COOKIE_KEY_ENV):
        try:
            fd = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # made before, or by another session just now
        else:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                out.write(secrets.token_urlsafe(48) + "\n")
    key = config.secret(COOKIE_KEY_ENV, file) or ""
    if len(key) < MIN_COOKIE_KEY:
        raise config.SecretError(
            f"the dashboard's cookie key ({COOKIE_KEY_ENV} or {file}) has {len(key)} characters;"
            f" it needs at least {MIN_COOKIE_KEY}"
        )
    return key


def _entries(path: Path) -> dict[str, tuple[User, str]]:
    entries = {}
    for name, entry in _raw(path)["credentials"]["usernames"].items():
        if not isinstance(entry, dict):
            raise UsersFileError(f"{path}: user {name!r} is not a mapping")
        if not isinstance(name, str) or not USERNAME.fullmatch(name):
            raise UsersFileError(f"{path}: user name {name!r} is not a valid user name")
        hashed = entry.get("password")
        if not isinstance(hashed, str) or not _BCRYPT.match(hashed):
            raise UsersFileError(
                f"{path}: the password of {name} is not a bcrypt hash; plaintext passwords are "
                f"refused: run `floorsight dashboard users add {name} --replace` to set one"
            )
        roles = entry.get("roles") or []
        if not isinstance(roles, list) or not roles or any(r not in ROLES for r in roles):
            raise UsersFileError(f"{path}: {name} needs roles, a list of {', '.join(ROLES)}")
        role = max(roles, key=ROLES.index)
        entries[name] = (User(name, str(entry.get("name") or name), role), hashed)
    return entries


def _raw(path: Path) -> dict:
    exposed = config.exposed_file(path)  # a missing file: FileNotFoundError names it
    if exposed:
        raise UsersFileError(exposed)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise UsersFileError(f"{path} is not valid YAML: {exc}") from None
    users = raw.get("credentials", {}).get("usernames") if isinstance(raw, dict) else None
    if users is None:
        users = {}
    if not isinstance(users, dict):
        raise UsersFileError(f"{path}: credentials.usernames must be a mapping of users")
    raw = raw if isinstance(raw, dict) else {}
    raw.setdefault("credentials", {})["usernames"] = users
    return raw


def _write(path: Path, raw: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        yaml.safe_dump(raw, out, sort_keys=True)
        out.flush()
        os.fsync(out.fileno())
    os.chmod(tmp, 0o600)  # a stale temporary file keeps its old mode through O_TRUNC
    os.replace(tmp, path)


def demo_users(folder: Path | str) -> tuple[Path, str | None]:
    """The users file of ``floorsight demo``: ``FLOORSIGHT_DASHBOARD_USERS`` if that file exists
    (returns no password), else a new one in ``folder`` with one ``admin`` user and a generated
    password, returned so the demo can print it once."""
    given = os.environ.get(USERS_ENV)
    if given and Path(given).expanduser().exists():
        return Path(given).expanduser(), None
    path = Path(folder) / "dashboard_users.yaml"
    password = secrets.token_urlsafe(12)
    add_user(path, "admin", password, "admin", replace=True)
    return path, password
