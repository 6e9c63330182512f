"""Dispatcher against real provider failures: claim tokens, client timeouts inside the lease,
"maybe sent" after a timeout or 5xx, errors before the request leaves, the WhatsApp 24-hour
window, and web answers emailed with the ticket link. Real Postgres, the local Gmail/Twilio
API servers through their SDKs, faults injected in those servers."""

from __future__ import annotations

import uuid

import httpx
import psycopg
import pytest
from psycopg.rows import dict_row
from pydantic import ValidationError
from test_dispatcher import make_dispatcher as make_base_dispatcher
from test_dispatcher import reply, row_of

from fte.settings import Settings
from sinks.outbox import enqueue_replies
from sinks.senders import GmailSender, TwilioSender, WebSender

BASE = "https://support.example.test"


@pytest.fixture
def app_settings(channel_api_server, migrated_db) -> Settings:
    return Settings(DATABASE_URL=migrated_db, TWILIO_API_BASE=channel_api_server, PUBLIC_BASE_URL=BASE,
                    GMAIL_DISCOVERY_URL=f"{channel_api_server}/discovery/gmail/v1/rest",
                    DISPATCH_CLIENT_TIMEOUT_S=1.0, DISPATCH_LEASE_S=30)


@pytest.fixture
def conn(migrated_db):
    with psycopg.connect(migrated_db, row_factory=dict_row, autocommit=True) as c:
        c.execute("INSERT INTO customers (id, display_name) VALUES (1, 'Ann')")
        yield c


@pytest.fixture
def faults(channel_api_server):
    def set_faults(**kw):
        httpx.post(f"{channel_api_server}/_sandbox/twilio/faults", json=kw).raise_for_status()
    yield set_faults
    set_faults()


def make_dispatcher(s: Settings, **kw):
    return make_base_dispatcher(s, public_base_url=s.PUBLIC_BASE_URL, **kw)


def whatsapp_seen(conn, minutes_ago: float) -> None:
    conn.execute("INSERT INTO messages (channel, channel_message_id, direction, author, customer_id, "
                 "body, occurred_at) VALUES ('whatsapp', %s, 'inbound', 'customer', 1, 'hi', "
                 "now() - make_interval(mins => %s))", (f"SM{uuid.uuid4().hex}", minutes_ago))


def phone() -> str:
    return f"whatsapp:+1555{uuid.uuid4().int % 10**7:07d}"


def twilio_sent(url: str, to: str) -> list[dict]:
    return httpx.get(f"{url}/_sandbox/twilio/sent", params={"to": to}).json()["messages"]


def gmail_sent_to(url: str, address: str) -> list[dict]:
    return [m for m in httpx.get(f"{url}/_sandbox/gmail/sent").json()["data"] if m["to"] == address]


def test_client_timeout_must_fit_inside_the_lease():
    with pytest.raises(ValidationError, match="DISPATCH_CLIENT_TIMEOUT_S"):
        Settings(DISPATCH_CLIENT_TIMEOUT_S=20, DISPATCH_LEASE_S=30)
    assert Settings(DISPATCH_CLIENT_TIMEOUT_S=10, DISPATCH_LEASE_S=30).DISPATCH_CLIENT_TIMEOUT_S == 10


def test_update_from_a_stale_claim_changes_nothing(conn, app_settings, channel_api_server):
    whatsapp_seen(conn, 1)
    to = phone()
    r = reply("whatsapp", to, ["hello once"])
    with conn.transaction():
        enqueue_replies(conn, [r])
    first, second = make_dispatcher(app_settings), make_dispatcher(app_settings)
    sender = TwilioSender(app_settings)
    stale = first.claim(conn, "whatsapp", 10)[0]
    # The first worker stalls past its lease; a second replica claims and delivers the row.
    conn.execute("UPDATE reply_outbox SET next_attempt_at = now() WHERE id = %s", (stale["id"],))
    second.run_once(conn, "whatsapp", sender)
    delivered = row_of(conn, r.inbound_key)
    assert delivered["status"] == "sent"
    first.deliver(conn, sender, stale)  # the stalled worker wakes up with its old claim
    assert row_of(conn, r.inbound_key) == delivered
    assert [m["body"] for m in twilio_sent(channel_api_server, to)] == ["hello once"]
    assert first.events == []


def test_5xx_after_the_message_left_is_looked_up_not_resent(conn, app_settings, channel_api_server, faults):
    whatsapp_seen(conn, 1)
    to = phone()
    r = reply("whatsapp", to, ["accepted then 503"])
    with conn.transaction():
        enqueue_replies(conn, [r])
    faults(accept_then_fail=1)
    d = make_dispatcher(app_settings)
    sender = TwilioSender(app_settings)
    d.run_once(conn, "whatsapp", sender)
    parked = row_of(conn, r.inbound_key)
    assert parked["status"] == "parked" and parked["in_doubt"] and "MaybeSent" in parked["last_error"]
    d.run_once(conn, "whatsapp", sender)  # retry: finds the message at Twilio
    done = row_of(conn, r.inbound_key)
    sent = twilio_sent(channel_api_server, to)
    assert done["status"] == "sent" and not done["in_doubt"]
    assert len(sent) == 1 and done["provider_message_ids"] == [sent[0]["sid"]]


def test_client_timeout_is_maybe_sent_and_reconciled(conn, app_settings, channel_api_server, faults):
    whatsapp_seen(conn, 1)
    to = phone()
    r = reply("whatsapp", to, ["slow provider"])
    with conn.transaction():
        enqueue_replies(conn, [r])
    faults(delay_s=3)  # longer than DISPATCH_CLIENT_TIMEOUT_S=1
    d = make_dispatcher(app_settings)
    sender = TwilioSender(app_settings)
    d.run_once(conn, "whatsapp", sender)
    assert row_of(conn, r.inbound_key)["in_doubt"]
    faults()
    d.run_once(conn, "whatsapp", sender)
    assert row_of(conn, r.inbound_key)["status"] == "sent"
    assert len(twilio_sent(channel_api_server, to)) == 1


def test_crlf_in_a_header_fails_the_row_without_calling_the_api_or_tripping_the_breaker(
        conn, app_settings, channel_api_server):
    addr = f"crlf{uuid.uuid4().hex[:6]}@x.com"
    r = reply("email", addr, ["Answer"], subject="Re: hi\r\nBcc: victim@example.com")
    with conn.transaction():
        enqueue_replies(conn, [r])
    d = make_dispatcher(app_settings, breaker_failures=1)
    d.run_once(conn, "email", GmailSender(app_settings))
    row = row_of(conn, r.inbound_key)
    assert row["status"] == "failed" and "email:" in row["last_error"]
    assert d.breakers["email"].state == "closed" and d.breakers["email"].consecutive == 0
    assert gmail_sent_to(channel_api_server, addr) == []
    assert [e.kind.value for e in d.events] == ["failed"]


def test_outside_the_session_window_the_template_is_sent(conn, app_settings, channel_api_server):
    whatsapp_seen(conn, 25 * 60)
    s = app_settings.model_copy(update={"TWILIO_TEMPLATE_CONTENT_SID": "HX" + "1" * 32})
    conn.execute("INSERT INTO tickets (id, customer_id, channel) VALUES ('T-WINDOW0001', 1, 'whatsapp')")
    to = phone()
    r = reply("whatsapp", to, ["A long free-form answer (1/2)", "(2/2)"], ticket_id="T-WINDOW0001")
    with conn.transaction():
        enqueue_replies(conn, [r])
    d = make_dispatcher(s, whatsapp_template=True)
    d.run_once(conn, "whatsapp", TwilioSender(s))
    sent = twilio_sent(channel_api_server, to)
    assert [m["body"] for m in sent] == ['{"1": "https://support.example.test/#T-WINDOW0001"}']
    assert row_of(conn, r.inbound_key)["status"] == "sent"


def test_outside_the_window_without_template_the_answer_goes_by_email(conn, app_settings, channel_api_server):
    whatsapp_seen(conn, 30 * 60)
    addr = f"ann{uuid.uuid4().hex[:6]}@example.com"
    conn.execute("INSERT INTO customer_identifiers (customer_id, kind, value) VALUES (1, 'email', %s)", (addr,))
    to = phone()
    r = reply("whatsapp", to, ["Your refund was issued."])
    with conn.transaction():
        enqueue_replies(conn, [r])
    d = make_dispatcher(app_settings)
    d.run_once(conn, "whatsapp", TwilioSender(app_settings))
    assert row_of(conn, r.inbound_key)["status"] == "rerouted"
    assert twilio_sent(channel_api_server, to) == []
    d.run_once(conn, "email", GmailSender(app_settings))
    assert row_of(conn, f"{r.inbound_key}:email")["status"] == "sent"
    [mail] = gmail_sent_to(channel_api_server, addr)
    assert mail["text"].startswith("Your refund was issued.")


def test_outside_the_window_with_no_other_channel_a_person_takes_over(conn, app_settings, channel_api_server):
    to = phone()  # no WhatsApp message from this customer at all: no session
    conn.execute("INSERT INTO tickets (id, customer_id, channel) VALUES ('T-NOCHANNEL01', 1, 'whatsapp')")
    r = reply("whatsapp", to, ["hello"], ticket_id="T-NOCHANNEL01")
    with conn.transaction():
        enqueue_replies(conn, [r])
    d = make_dispatcher(app_settings)
    d.run_once(conn, "whatsapp", TwilioSender(app_settings))
    assert row_of(conn, r.inbound_key)["status"] == "failed"
    esc = conn.execute("SELECT * FROM escalations WHERE ticket_id = 'T-NOCHANNEL01'").fetchone()
    assert esc["reason"] == "delivery_failed" and "24-hour" in esc["detail"]
    ticket = conn.execute("SELECT status, first_response_at FROM tickets WHERE id = 'T-NOCHANNEL01'").fetchone()
    assert ticket["status"] == "escalated" and ticket["first_response_at"] is None


@pytest.mark.parametrize("verified", [True, False])
def test_web_answer_is_emailed_with_the_ticket_link_only_to_a_verified_email(
        conn, app_settings, channel_api_server, verified):
    addr = f"web{uuid.uuid4().hex[:6]}@example.com"
    ticket = f"T-{uuid.uuid4().hex[:20].upper()}"
    conn.execute("INSERT INTO tickets (id, customer_id, channel, subject, contact_email, "
                 "contact_email_verified) VALUES (%s, 1, 'web', 'Invoice', %s, %s)", (ticket, addr, verified))
    r = reply("web", addr, ["You can download it under Orders."], ticket_id=ticket)
    with conn.transaction():
        enqueue_replies(conn, [r])
    d = make_dispatcher(app_settings)
    d.run_once(conn, "web", WebSender())
    assert row_of(conn, r.inbound_key)["status"] == "sent"
    d.run_once(conn, "email", GmailSender(app_settings))
    mails = gmail_sent_to(channel_api_server, addr)
    if not verified:
        assert mails == [] and row_of(conn, f"{r.inbound_key}:email") is None
        return
    [mail] = mails
    assert mail["subject"] == "Re: Invoice"
    assert "You can download it under Orders." in mail["text"]
    assert f"{BASE}/#{ticket}" in mail["text"]
