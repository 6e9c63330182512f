"""Login state for the console: a password form, or OIDC (`st.login`) when configured.

Every page calls `require_login()` first, so no page renders data for an anonymous session
even when opened directly; the entry file shows only the login page until then.
"""

from __future__ import annotations

import time

import streamlit as st

from console import auth
from console.data import settings

USER_KEY = "console_user"
_FAILURES_KEY = "console_login_failures"
MAX_FAILURES = 5
LOCKOUT_S = 60


@st.cache_resource(show_spinner=False)
def _users(signature: tuple) -> dict[str, bytes]:
    return auth.load_users(settings())


def users() -> dict[str, bytes]:
    s = settings()
    # Re-read when the configuration changes (e.g. `fte up` created the dev password).
    path = auth.dev_password_file(s)
    signature = (s.CONSOLE_USERS, bool(s.CONSOLE_DEV_PASSWORD),
                 path.stat().st_mtime if path.exists() else None)
    return _users(signature)


def oidc_configured() -> bool:
    try:
        return "auth" in st.secrets
    except Exception:  # noqa: BLE001 -- no secrets file at all raises; then there is no OIDC
        return False


def current_user() -> str | None:
    user = st.session_state.get(USER_KEY)
    if user:
        return user
    if oidc_configured() and getattr(st.user, "is_logged_in", False):
        return st.user.get("email") or st.user.get("name")
    return None


def require_login() -> str:
    user = current_user()
    if not user:
        st.warning("Please log in to use the console.")
        st.stop()
    return user


def sign_out() -> None:
    st.session_state.pop(USER_KEY, None)
    if oidc_configured() and getattr(st.user, "is_logged_in", False):
        st.logout()


def login_form() -> None:
    st.title("fte support console")
    st.caption("Sign in to see customers, escalations and the live metrics.")
    if oidc_configured():
        if st.button("Log in with single sign-on", key="login_oidc", type="primary"):
            st.login()
        st.divider()
    failures = st.session_state.get(_FAILURES_KEY, [])
    recent = [t for t in failures if time.time() - t < LOCKOUT_S]
    with st.form("login", clear_on_submit=False):
        username = st.text_input("User", key="login_user")
        password = st.text_input("Password", type="password", key="login_password")
        submitted = st.form_submit_button("Log in", type="primary")
    try:
        known = users()
    except ValueError as exc:  # a malformed CONSOLE_USERS: say which entry, never the hash
        st.error(str(exc))
        return
    if not known:
        st.info("No console users are configured: set CONSOLE_USERS "
                "(hashes from `fte console hash-password`).")
    if not submitted:
        return
    if len(recent) >= MAX_FAILURES:
        st.error("Too many failed attempts; try again in a minute.")
        return
    if auth.verify(known, username, password):
        st.session_state[USER_KEY] = username.strip()
        st.session_state.pop(_FAILURES_KEY, None)
        st.rerun()
    else:
        st.session_state[_FAILURES_KEY] = [*recent, time.time()]
        st.error("Unknown user or wrong password.")
