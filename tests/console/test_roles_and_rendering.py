"""Console roles, single sign-on allow-list, login throttling in Postgres, customer text
rendered as text, and a human reply sent once per compose (issue 9)."""

from __future__ import annotations

import bcrypt
import pytest
from console_apptest import APP, DEV_PASSWORD, open_page, texts
from streamlit.testing.v1 import AppTest

from console import auth
from fte.settings import Settings


def test_users_carry_roles_and_an_unknown_role_is_refused():
    h = auth.hash_password("pw-123456")
    entries = auth.parse_entries(f"ana:admin:{h},ben:{h},cy:viewer:{h}")
    assert {n: r for n, (r, _) in entries.items()} == {"ana": "admin", "ben": "agent", "cy": "viewer"}
    assert auth.verify(auth.parse_users(f"ana:admin:{h}"), "ana", "pw-123456")
    with pytest.raises(ValueError, match="role must be one of"):
        auth.parse_entries(f"ana:root:{h}")


def test_each_action_needs_its_role():
    assert auth.can("viewer", "read") and not auth.can("viewer", "reply")
    assert auth.can("agent", "reply") and auth.can("agent", "assign") and auth.can("agent", "resolve")
    assert not auth.can("agent", "replay") and not auth.can("agent", "kb_edit")
    assert auth.can("admin", "replay") and auth.can("admin", "kb_edit")
    assert not auth.can(None, "read") and not auth.can("root", "read")


def test_single_sign_on_admits_only_the_allow_list_with_its_role():
    s = Settings(CONSOLE_SSO_ALLOW="ana@example.com:admin,ben@example.com",
                 CONSOLE_SSO_GROUPS="support-agents:agent", CONSOLE_SSO_GROUP_CLAIM="groups")
    assert auth.sso_role({"email": "Ana@Example.com"}, s) == "admin"
    assert auth.sso_role({"email": "ben@example.com"}, s) == "viewer"
    assert auth.sso_role({"email": "cy@example.com", "groups": ["support-agents"]}, s) == "agent"
    assert auth.sso_role({"email": "ben@example.com", "groups": "support-agents"}, s) == "agent"
    assert auth.sso_role({"email": "eve@example.com", "groups": ["everyone"]}, s) is None
    assert auth.sso_role({"email": "ana@example.com", "email_verified": False}, s) is None
    assert auth.sso_role({}, Settings()) is None


def test_unknown_users_are_checked_against_a_hash_as_dear_as_the_real_ones():
    users = auth.parse_users(f"ana:{bcrypt.hashpw(b'x', bcrypt.gensalt(rounds=13)).decode()}")
    dummy = auth.dummy_hash_for(users)
    assert dummy.split(b"$")[2] == b"13"
    assert not auth.verify(users, "nobody", "x")


def _login(user: str, password: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    at.text_input(key="login_user").input(user)
    at.text_input(key="login_password").input(password)
    at.button[0].click().run()
    assert not at.exception, at.exception
    return at


def test_failed_logins_are_throttled_per_user_name_across_sessions(console_env, db):
    for _ in range(5):  # each attempt a new session: a fresh browser tab does not reset it
        at = _login("lead", "wrong password")
        assert "Unknown user or wrong password." in [e.value for e in at.error]
    at = _login("lead", DEV_PASSWORD)
    assert "Too many failed attempts for this user; try again in a minute." in [e.value for e in at.error]
    assert "console_user" not in at.session_state
    assert db.execute("SELECT count(*) FROM console_login_failures WHERE username = 'lead'").fetchone() == (5,)
    # Unknown names are counted the same way (nothing tells them apart), other names are not held up.
    for _ in range(5):
        _login("Ghost ", "x")
    assert "Too many failed attempts" in texts(_login("ghost", "x"))
    db.execute("DELETE FROM console_login_failures WHERE username = 'lead'")
    at = _login("lead", DEV_PASSWORD)
    assert at.session_state["console_user"] == "lead" and at.session_state["console_role"] == "admin"


def test_a_viewer_cannot_assign_resolve_or_reply(console_env, db):
    at = open_page("escalations", user="vic", role="viewer")
    assert at.button(key="esc_assign").disabled and at.button(key="esc_resolve").disabled
    assert at.button(key="esc_reply_send").disabled
    assert "need the agent role" in texts(at)
    assert db.execute("SELECT count(*) FROM reply_outbox WHERE kind = 'human'").fetchone() == (0,)


def test_an_agent_replies_but_cannot_replay_dead_letters_or_edit_the_kb(console_env, db):
    at = open_page("escalations", user="ann", role="agent")
    assert not at.button(key="esc_reply_send").disabled and not at.button(key="esc_assign").disabled
    at = open_page("dead_letters", user="ann", role="agent")
    assert at.button(key="dl_replay").disabled
    assert db.execute("SELECT count(*) FROM dead_letters WHERE replayed_at IS NOT NULL").fetchone() == (0,)
    at = open_page("knowledge", user="ann", role="agent")
    assert at.button(key="kb_save").disabled
    admin = open_page("dead_letters", user="root", role="admin")
    assert not admin.button(key="dl_replay").disabled


def test_customer_supplied_text_is_shown_as_text_never_markdown(console_env, db):
    evil_name = "![x](https://evil.example/p.png) **Boss** :red[alert]"
    evil_detail = "[click here](javascript:alert(1)) <img src=x onerror=alert(1)>"
    db.execute("UPDATE customers SET display_name = %s WHERE id = 2", (evil_name,))
    db.execute("UPDATE escalations SET detail = %s WHERE id = 2", (evil_detail,))
    db.execute("UPDATE dead_letters SET reason = %s", ("![pixel](https://evil.example/dl.png)",))
    at = open_page("escalations")
    assert at.selectbox(key="esc_selected").value == 2
    markdown = [str(e.value) for kind in ("title", "subheader", "markdown", "caption", "info", "success",
                                           "warning", "error") for e in getattr(at, kind)]
    assert not any("](" in m or "<img" in m or ":red[" in m for m in markdown), markdown
    assert any("\\!\\[x\\]" in m for m in markdown)  # shown, escaped
    assert evil_detail in [e.value for e in at.text]  # the summary, as plain text
    at = open_page("dead_letters")
    assert not any("](" in str(e.value) for kind in ("subheader", "markdown", "caption")
                   for e in getattr(at, kind))
    assert "![pixel](https://evil.example/dl.png)" in [e.value for e in at.text]
    at = open_page("customers")
    at.text_input(key="cust_query").input("Boss").run()
    assert not any("](" in str(e.value) for e in at.subheader)


def test_a_double_click_sends_one_human_reply(console_env, db):
    at = open_page("escalations", user="ana", role="agent")
    at.text_area(key="esc_reply_text").input("Your replacement ships today.")
    at.button(key="esc_reply_send").click().run()
    at.button(key="esc_reply_send").click().run()
    assert not at.exception, at.exception
    assert db.execute("SELECT count(*) FROM reply_outbox WHERE kind = 'human'").fetchone() == (1,)
    assert "already queued" in texts(at)


def test_the_same_compose_key_queues_once(console_env, db):
    from console import actions

    first = actions.reply_as_human(2, "ana", "We are on it.", reply_id="a" * 32)
    again = actions.reply_as_human(2, "ana", "We are on it.", reply_id="a" * 32)
    assert not first.duplicate and again.duplicate
    assert db.execute("SELECT count(*) FROM reply_outbox WHERE inbound_key = %s",
                      ("human:" + "a" * 32,)).fetchone() == (1,)
    assert db.execute("SELECT count(*) FROM console_audit WHERE action = 'human_reply'").fetchone() == (1,)
