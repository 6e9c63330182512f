"""Web-form identifiers verified by a one-time code (WhatsApp) or link/code (email), through
the real ingress, Postgres, the reply outbox and the dispatcher delivering to the local
Gmail and Twilio APIs. Only after confirmation does the identifier link (and merge)."""

from __future__ import annotations

import re
import time
import uuid

import httpx
import psycopg
import pytest
from psycopg.rows import dict_row
from testkit import ServerThread

from fte.kafka import ensure_topics
from fte.settings import Settings
from schema.events import Identifier, IdentifierKind
from schema.migrate import migrate
from sinks.identity import resolve_customer

pytestmark = pytest.mark.timeout(240)


@pytest.fixture
def verify_env(fresh_database, ingress_settings, sandbox_url, mailbox):
    migrate(fresh_database)
    ensure_topics(ingress_settings.kafka_bootstrap, ingress_settings.TOPIC_PREFIX)
    ingress = ingress_settings.model_copy(update={"DATABASE_URL": fresh_database})
    from ingress.app import create_app
    from sinks.dispatcher import build_dispatcher

    dispatch_settings = Settings(DATABASE_URL=fresh_database, KAFKA_BOOTSTRAP_SERVERS=ingress.kafka_bootstrap,
                                 TOPIC_PREFIX=ingress.TOPIC_PREFIX, GMAIL_MAILBOX=mailbox,
                                 GMAIL_DISCOVERY_URL=f"{sandbox_url}/discovery/gmail/v1/rest",
                                 TWILIO_API_BASE=sandbox_url, DISPATCH_RETRY_BASE_S=0.2,
                                 DISPATCH_RETRY_MAX_S=1)
    sender = build_dispatcher(dispatch_settings, sweep_s=0.3).start()
    try:
        with ServerThread(create_app(ingress)) as url, httpx.Client(base_url=url, timeout=30) as client:
            yield {"db": fresh_database, "client": client, "sandbox": sandbox_url, "mailbox": mailbox}
    finally:
        sender.stop()


def sql(db: str, query: str, params=()) -> list[dict]:
    with psycopg.connect(db, row_factory=dict_row, autocommit=True) as conn:
        cur = conn.execute(query, params)
        return cur.fetchall() if cur.description else []


def flow_takes_ticket(db: str, ticket_id: str, email: str, phone: str | None) -> int:
    """What the support flow does with a web ticket: its unverified identifiers get a customer
    of their own (flows/linking.py), written on the ticket."""
    idents = [Identifier(kind=IdentifierKind.EMAIL, value=email)]
    if phone:
        idents.append(Identifier(kind=IdentifierKind.PHONE, value=phone))
    with psycopg.connect(db) as conn, conn.transaction():
        cid, _ = resolve_customer(conn, idents, channel="web", display_name="Form User")
        conn.execute("UPDATE tickets SET customer_id = %s WHERE id = %s", (cid, ticket_id))
    return cid


def wait_for(fn, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = fn()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError("timed out")


def submit(client, email: str, phone: str | None) -> str:
    form = {"name": "Vera Form", "email": email, "subject": "Torn dress", "message": "My dress arrived torn."}
    if phone:
        form["phone"] = phone
    r = client.post("/support/submit", json=form)
    assert r.status_code == 202, r.text
    return r.json()["ticket_id"]


def test_phone_verified_by_whatsapp_code_then_linked_and_merged(verify_env):
    db, client, sandbox = verify_env["db"], verify_env["client"], verify_env["sandbox"]
    phone = f"+1555{uuid.uuid4().int % 10_000_000:07d}"
    with psycopg.connect(db) as conn, conn.transaction():  # the number's owner, from a signed WhatsApp
        owner, _ = resolve_customer(conn, [Identifier(kind=IdentifierKind.PHONE, value=phone, verified=True)],
                                    channel="whatsapp", display_name="Victoria")
    email = f"vera.{uuid.uuid4().hex[:6]}@example.com"
    ticket = submit(client, email, phone)
    r = client.post("/support/verify/start", json={"ticket_id": ticket, "kind": "phone"})
    assert r.status_code == 409  # the flow has not taken the ticket yet
    form_customer = flow_takes_ticket(db, ticket, email, phone)
    assert form_customer != owner

    r = client.post("/support/verify/start", json={"ticket_id": ticket, "kind": "phone"})
    assert r.status_code == 202, r.text
    assert r.json()["sent_to"].startswith("+15") and phone not in r.json()["sent_to"]
    sent = wait_for(lambda: httpx.get(f"{sandbox}/_sandbox/twilio/sent",
                                      params={"to": f"whatsapp:{phone}"}).json()["messages"])
    code = re.search(r"code for support request \S+ is (\d{6})", sent[0]["body"]).group(1)
    row = sql(db, "SELECT * FROM identifier_verifications WHERE ticket_id = %s", (ticket,))[0]
    assert code.encode() not in bytes(row["code_hash"]) and row["token_hash"] is None  # hashed at rest
    # Never in messages: not on the ticket page, not in the agent's history.
    assert not sql(db, "SELECT 1 FROM messages WHERE body LIKE %s", (f"%{code}%",))
    assert code not in client.get(f"/support/ticket/{ticket}").text

    wrong = "000000" if code != "000000" else "111111"
    r = client.post("/support/verify/confirm", json={"ticket_id": ticket, "kind": "phone", "code": wrong})
    assert r.status_code == 400 and "code" in r.json()["detail"]
    assert not sql(db, "SELECT 1 FROM customer_merges")
    r = client.post("/support/verify/confirm", json={"ticket_id": ticket, "kind": "phone", "code": code})
    assert r.status_code == 200 and r.json() == {"kind": "phone", "verified": True}
    merges = sql(db, "SELECT survivor_id, merged_id FROM customer_merges")
    assert merges == [{"survivor_id": owner, "merged_id": form_customer}]
    assert sql(db, "SELECT customer_id FROM tickets WHERE id = %s", (ticket,))[0]["customer_id"] == owner
    r = client.post("/support/verify/confirm", json={"ticket_id": ticket, "kind": "phone", "code": code})
    assert r.status_code == 404  # single use


def test_email_verified_by_link_once_and_codes_are_attempt_limited(verify_env):
    db, client, sandbox, mailbox = (verify_env[k] for k in ("db", "client", "sandbox", "mailbox"))
    email = f"eve.{uuid.uuid4().hex[:6]}@example.com"
    ticket = submit(client, email, None)
    form_customer = flow_takes_ticket(db, ticket, email, None)
    assert client.post("/support/verify/start", json={"ticket_id": ticket, "kind": "phone"}).status_code == 422
    r = client.post("/support/verify/start", json={"ticket_id": ticket, "kind": "email"})
    assert r.status_code == 202 and r.json()["sent_to"].startswith("e***@")
    mail = wait_for(lambda: [m for m in httpx.get(f"{sandbox}/_sandbox/gmail/sent",
                                                  params={"mailbox": mailbox}).json()["data"]
                             if m["to"] == email])[0]
    assert mail["subject"] == "Confirm your email address"
    token = re.search(r"/support/verify/([A-Za-z0-9_-]{40,64})", mail["text"]).group(1)
    code = re.search(r"enter the code (\d{6})", mail["text"]).group(1)

    wrong = "000000" if code != "000000" else "111111"
    for _ in range(5):
        r = client.post("/support/verify/confirm", json={"ticket_id": ticket, "kind": "email", "code": wrong})
        assert r.status_code == 400
    r = client.post("/support/verify/confirm", json={"ticket_id": ticket, "kind": "email", "code": code})
    assert r.status_code == 429  # five wrong codes: even the right one is refused now
    assert not sql(db, "SELECT 1 FROM customer_identifiers WHERE value = %s", (email,))
    assert sql(db, "SELECT contact_email_verified FROM tickets WHERE id = %s", (ticket,)) == [
        {"contact_email_verified": False}]

    r = client.get(f"/support/verify/{token}")
    assert r.status_code == 200 and "confirmed" in r.text
    linked = sql(db, "SELECT customer_id, verified, verified_by FROM customer_identifiers WHERE value = %s",
                 (email,))
    assert linked == [{"customer_id": form_customer, "verified": True, "verified_by": "web-link"}]
    # The ticket's answers now also go to that address (sinks/dispatcher.py: _email_copy).
    assert sql(db, "SELECT contact_email_verified FROM tickets WHERE id = %s", (ticket,)) == [
        {"contact_email_verified": True}]
    assert client.get(f"/support/verify/{token}").status_code == 404  # single use
    assert client.get(f"/support/verify/{'x' * 43}").status_code == 404


def test_expired_codes_and_too_many_requests_are_refused(verify_env):
    db, client = verify_env["db"], verify_env["client"]
    email = f"old.{uuid.uuid4().hex[:6]}@example.com"
    ticket = submit(client, email, None)
    flow_takes_ticket(db, ticket, email, None)
    assert client.post("/support/verify/start", json={"ticket_id": ticket, "kind": "email"}).status_code == 202
    sql(db, "UPDATE identifier_verifications SET expires_at = now() - interval '1 second'")
    r = client.post("/support/verify/confirm", json={"ticket_id": ticket, "kind": "email", "code": "123456"})
    assert r.status_code == 404
    for _ in range(2):
        assert client.post("/support/verify/start", json={"ticket_id": ticket, "kind": "email"}).status_code == 202
    r = client.post("/support/verify/start", json={"ticket_id": ticket, "kind": "email"})
    assert r.status_code == 429
    bad = client.post("/support/verify/start", json={"ticket_id": "T-../../etc", "kind": "email"})
    assert bad.status_code == 422
    missing = client.post("/support/verify/start", json={"ticket_id": "T-0000000000000000", "kind": "email"})
    assert missing.status_code == 404
