"""The dashboard tests' users: a users file with known bcrypt hashes, and signing in.

The hashes are made with bcrypt's lowest cost (4) so that signing in many times stays fast;
the app checks them with the same ``bcrypt.checkpw`` as a cost-12 hash.
"""

from __future__ import annotations

from pathlib import Path

import bcrypt
import yaml

#: user name: (password, role)
USERS = {
    "maria": ("maria-password", "engineer"),
    "vera": ("vera-password", "viewer"),
    "ada": ("ada-password", "admin"),
}
COOKIE_KEY = "test-cookie-key-" + "k" * 40


def write_users(path: Path, users: dict[str, tuple[str, str]] = USERS) -> Path:
    """A users file private to its owner, with a cheap bcrypt hash of each password."""
    entries = {
        name: {
            "name": name,
            "password": bcrypt.hashpw(password.encode(), bcrypt.gensalt(4)).decode(),
            "roles": [role],
        }
        for name, (password, role) in users.items()
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump({"credentials": {"usernames": entries}}), encoding="utf-8")
    path.chmod(0o600)
    return path


def sign_in(at, username: str, password: str | None = None):
    """Fill the app's sign-in form (an ``AppTest`` that has run once) and submit it."""
    password = USERS[username][0] if password is None else password
    at.text_input[0].input(username)
    at.text_input[1].input(password)
    return at.button[0].click().run()
