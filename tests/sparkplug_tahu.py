"""Eclipse Tahu's own Sparkplug B encoder and edge node client (Node.js), for the Sparkplug tests.

The payloads the Sparkplug tests decode are encoded by Tahu's npm ``sparkplug-payload`` (the
reference implementation), never by floorsight's code: ``tests/sparkplug_node/encode.js``
encodes, ``edge_node.js`` is an edge node on Tahu's ``sparkplug-client``. The packages are
installed from ``tests/sparkplug_node/package-lock.json`` by ``make test`` (or with ``npm ci``
here on first use).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import NoReturn

import pytest

NODE_DIR = Path(__file__).parent / "sparkplug_node"


def _missing(what: str) -> NoReturn:
    """A skip on a developer's machine; in CI (``CI`` set) a failure: the tests must run."""
    if os.environ.get("CI"):
        pytest.fail(f"{what} (make system installs it)")
    pytest.skip(f"{what} (make system installs it)")


def node_binary() -> str:
    """The ``node`` binary with Tahu's packages installed, or a skip saying what is missing."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None:
        _missing("Node.js is not installed")
    if not (NODE_DIR / "node_modules" / "sparkplug-client").is_dir():
        if npm is None:
            _missing("npm is not installed")
        subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--ignore-scripts"],
            cwd=NODE_DIR,
            check=True,
            capture_output=True,
            timeout=300,
        )
    return node


def tahu_encode(*payloads: dict) -> list[bytes]:
    """Each payload (Tahu's JavaScript form) as Tahu's ``encodePayload`` encodes it."""
    done = subprocess.run(
        [node_binary(), str(NODE_DIR / "encode.js")],
        input=json.dumps(list(payloads)),
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return [bytes.fromhex(h) for h in json.loads(done.stdout)]
