"""Sign-in for the dashboard: streamlit-authenticator over the users file, and who is signed in.

``app.py`` calls :func:`sign_in` before it draws any page: until someone signs in with a user
name and password from the users file (``dashboards/users.py``: bcrypt hashes and roles), the
app shows only the sign-in form. A signed-in browser keeps a cookie (a JWT signed with the
cookie key, holding the user name and an expiry) for :data:`COOKIE_DAYS`, so a reload does not
ask again; the role is read from the users file on every run, so changing or removing a user
takes effect at that user's next click.

Actions check the session themselves (:func:`require`): hiding a button is for the eye, the
refusal is on the server.
"""

from __future__ import annotations

import streamlit as st
import streamlit_authenticator as stauth
from streamlit_authenticator.utilities import LoginError

from floorsight.config import SecretError
from floorsight.dashboards.common import literal, users_path
from floorsight.dashboards.users import User, UsersFileError, cookie_key, credentials, read_users

COOKIE_NAME = "floorsight_dashboard"
#: A signed-in browser stays signed in for half a day (about a shift and a half).
COOKIE_DAYS = 0.5
#: streamlit-authenticator waits this long on each run of a signed-out session before it draws
#: the form (its default, for the browser's cookie to arrive); it also slows password guessing.
SIGN_IN_WAIT_S = 0.7
FIELDS = {
    "Form name": "Sign in to floorsight",
    "Username": "User name",
    "Password": "Password",
    "Login": "Sign in",
}


def sign_in() -> User | None:
    """The signed-in user; while there is none, the sign-in form (and why the last try failed).

    The form is drawn in a box that a successful sign-in empties, so the page the link asked
    for is drawn in the same run, without the form.
    """
    path = users_path()
    try:
        known = credentials(path)
        key = cookie_key(path)
    except FileNotFoundError:
        st.error(
            f"No users file at {literal(path)}: create one with "
            "`floorsight dashboard users add NAME --role admin`."
        )
        return None
    except (UsersFileError, SecretError) as exc:
        st.error(literal(exc))
        return None
    # cookie expiry 0: the library's login() sets no cookie inside the form's box, which is
    # emptied on success; this function sets it below, outside the box
    authenticator = stauth.Authenticate(
        known, COOKIE_NAME, key, 0, auto_hash=False, login_sleep_time=SIGN_IN_WAIT_S
    )
    was_signed_in = bool(st.session_state.get("authentication_status"))
    by_cookie = not was_signed_in and bool(authenticator.cookie_controller.get_cookie())
    box = st.empty()
    try:
        with box.container():
            authenticator.login(location="main", fields=FIELDS, key="floorsight_sign_in")
    except LoginError:  # a valid cookie of a user who is no longer in the users file
        st.session_state["logout"] = True  # streamlit-authenticator: no sign-in by cookie
        authenticator.cookie_controller.delete_cookie()
        with box.container():
            authenticator.login(location="main", fields=FIELDS, key="floorsight_sign_in")
    status = st.session_state.get("authentication_status")
    if status is False:
        st.error("Wrong user name or password.")
        return None
    if not status:
        return None
    user = read_users(path).get(st.session_state.get("username"))
    if user is None:  # removed from the users file while signed in
        authenticator.logout(location="unrendered")
        st.rerun()
    if not was_signed_in and not by_cookie:  # signed in with the form just now
        box.empty()
        authenticator.cookie_controller.cookie_model.cookie_expiry_days = COOKIE_DAYS
        authenticator.cookie_controller.set_cookie()
    st.sidebar.caption(f"Signed in as **{literal(user.username)}** ({user.role})")
    authenticator.logout("Sign out", location="sidebar", key="floorsight_sign_out")
    if not st.session_state.get("authentication_status"):  # signed out just now
        st.info("Signed out.")
        authenticator.login(location="main", fields=FIELDS, key="floorsight_sign_in")
        return None
    return user


def current_user() -> User | None:
    """Who this session is signed in as, with the role the users file gives them now."""
    if st.session_state.get("authentication_status") is not True:
        return None
    username = st.session_state.get("username")
    try:
        return read_users(users_path()).get(username) if username else None
    except (OSError, UsersFileError):
        return None


def require(action: str) -> User:
    """The signed-in user if their role allows ``action``, else ``PermissionError``."""
    user = current_user()
    if user is None:
        raise PermissionError(f"sign in to {action} alerts")
    if not user.may(action):
        raise PermissionError(f"{user.username} ({user.role}) may not {action} alerts")
    return user
