"""Login state for the console: a password form, or OIDC (`st.login`) when configured.

Every page calls `require_login()` first, so no page renders data for an anonymous session
even when opened directly; the entry file shows only the login page until then. Actions
check `allowed(action)` (roles in `console.auth`). Failed password logins are counted per
user name in Postgres, so a pause applies across sessions and console replicas.
"""

from __future__ import annotations

import streamlit as st

from console import auth, data
from console.data import settings
from schema.queries import console as q

USER_KEY = "console_user"
ROLE_KEY = "console_role"


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


def _sso_claims() -> dict:
    keys = ("email", "email_verified", "name", settings().CONSOLE_SSO_GROUP_CLAIM)
    return {k: st.user.get(k) for k in keys if st.user.get(k) is not None}


def _sso_user() -> tuple[str, str] | None:
    """(user, role) of a single sign-on session on the allow-list, else None."""
    if not (oidc_configured() and getattr(st.user, "is_logged_in", False)):
        return None
    claims = _sso_claims()
    role = auth.sso_role(claims, settings())
    if role is None:
        return None
    return str(claims.get("email") or claims.get("name")), role


def current_user() -> str | None:
    user = st.session_state.get(USER_KEY)
    if user:
        return user
    sso = _sso_user()
    return sso[0] if sso else None


def current_role() -> str | None:
    if st.session_state.get(USER_KEY):
        return st.session_state.get(ROLE_KEY)
    sso = _sso_user()
    return sso[1] if sso else None


def allowed(action: str) -> bool:
    """Whether the logged-in user's role may do `action` (see `auth.NEEDS`)."""
    return auth.can(current_role(), action)


def require_login() -> str:
    user = current_user()
    if not user:
        st.warning("Please log in to use the console.")
        st.stop()
    return user


def sign_out() -> None:
    st.session_state.pop(USER_KEY, None)
    st.session_state.pop(ROLE_KEY, None)
    if oidc_configured() and getattr(st.user, "is_logged_in", False):
        st.logout()


def _locked(name: str) -> bool:
    s = settings()
    with data.connection() as conn:
        now = conn.execute(q.DB_NOW).fetchone()["now"]
        times = [r["failed_at"] for r in conn.execute(q.RECENT_LOGIN_FAILURES, {
            "username": name, "window_s": s.CONSOLE_LOGIN_LOCKOUT_S}).fetchall()]
    return auth.locked(times, now=now, max_failures=s.CONSOLE_LOGIN_MAX_FAILURES,
                       lockout_s=s.CONSOLE_LOGIN_LOCKOUT_S)


def _record(name: str, ok: bool) -> None:
    with data.connection() as conn, conn.transaction():
        conn.execute(q.CLEAR_LOGIN_FAILURES if ok else q.RECORD_LOGIN_FAILURE, {"username": name})


def login_form() -> None:
    st.title("fte support console")
    st.caption("Sign in to see customers, escalations and the live metrics.")
    if oidc_configured():
        if getattr(st.user, "is_logged_in", False) and _sso_user() is None:
            st.error("This single sign-on account is not allowed to use the console.")
            if st.button("Sign out of single sign-on", key="login_oidc_out"):
                st.logout()
        elif st.button("Log in with single sign-on", key="login_oidc", type="primary"):
            st.login()
        st.divider()
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
    name = auth.throttle_key(username)
    if _locked(name):
        st.error("Too many failed attempts for this user; try again in a minute.")
        return
    if auth.verify(known, username, password):
        _record(name, ok=True)
        st.session_state[USER_KEY] = username.strip()
        st.session_state[ROLE_KEY] = auth.roles(settings()).get(username.strip(), "viewer")
        st.rerun()
    else:
        _record(name, ok=False)
        st.error("Unknown user or wrong password.")
