"""What a signed-in person does to an alert from the dashboard, checked on the server.

:func:`act` is the only way the dashboard writes to an alert. It takes the actor from the
signed-in session (``auth.require``), never from the page, and refuses an action the user's
role does not allow (a viewer's, or anyone's who is not signed in) before anything is written:
a hidden button is not the check, this is. Then it goes through ``floorsight.alerts.lifecycle``
(one audit row and the alert's status in one short transaction).
"""

from __future__ import annotations

from floorsight.alerts import lifecycle
from floorsight.dashboards.auth import require
from floorsight.dashboards.common import FILE_ACCESS
from floorsight.dashboards.users import User
from floorsight.storage import Database

#: the actions, in the order the page offers them
ACTIONS = ("acknowledge", "resolve", "comment", "reopen")


def act(db: Database, alert_id: str, action: str, note: str = "", label: str | None = None) -> User:
    """Do ``action`` (acknowledge, resolve, comment, reopen) on ``alert_id`` as the signed-in
    user; returns that user. ``PermissionError`` if their role does not allow it, ``ValueError``
    from the lifecycle if the alert's state does not (nothing is written either way)."""
    if action not in ACTIONS:
        raise ValueError(f"unknown action {action!r}")
    user = require(action)
    with FILE_ACCESS.write():
        if action == "acknowledge":
            lifecycle.acknowledge(db.path, alert_id, user.username, note)
        elif action == "resolve":
            lifecycle.resolve(db.path, alert_id, user.username, note, label)
        elif action == "comment":
            lifecycle.comment(db.path, alert_id, user.username, note)
        else:
            lifecycle.reopen(db.path, alert_id, user.username, note)
    return user
