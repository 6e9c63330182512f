"""The outbox and its dispatcher against the real Postgres and the local Gmail/Twilio API
servers (through google-api-python-client and the twilio SDK)."""

from __future__ import annotations

import uuid

import httpx
import psycopg
import pytest
from psycopg.rows import dict_row

from fte.settings import Settings
from schema.events import Channel, Reply, ReplyKind
from sinks.dispatcher import CircuitBreaker, Dispatcher
from sinks.outbox import enqueue_replies
from sinks.senders import GmailSender, TwilioSender, WebSender


@pytest.fixture
def app_settings(channel_api_server, migrated_db) -> Settings:
    return Settings(DATABASE_URL=migrated_db, TWILIO_API_BASE=channel_api_server,
                    GMAIL_DISCOVERY_URL=f"{channel_api_server}/discovery/gmail/v1/rest")


@pytest.fixture
def conn(migrated_db):
    with psycopg.connect(migrated_db, row_factory=dict_row, autocommit=True) as c:
        c.execute("INSERT INTO customers (id, display_name) VALUES (1, 'Ann')")
        # Ann wrote on WhatsApp a minute ago: the 24-hour session window is open.
        c.execute("INSERT INTO messages (channel, channel_message_id, direction, author, customer_id, "
                  "body, occurred_at) VALUES ('whatsapp', 'SMann', 'inbound', 'customer', 1, 'hi', "
                  "now() - interval '1 minute')")
        yield c


def reply(channel: str, recipient: str, parts: list[str], **kw) -> Reply:
    return Reply(inbound_key=f"{channel}:{uuid.uuid4().hex}", kind=ReplyKind.AGENT,
                 channel=Channel(channel), customer_id=1, recipient=recipient,
                 subject=kw.pop("subject", None), body="\n".join(parts), parts=parts, **kw)


def make_dispatcher(s: Settings, **kw) -> Dispatcher:
    events = []
    d = Dispatcher(s.database_url, {"email": lambda: GmailSender(s), "whatsapp": lambda: TwilioSender(s),
                                    "web": WebSender},
                   publish=events.append, retry_base_s=0, **kw)
    d.events = events
    return d


def row_of(conn, inbound_key: str) -> dict:
    return conn.execute("SELECT * FROM reply_outbox WHERE inbound_key=%s", (inbound_key,)).fetchone()


def test_enqueue_is_idempotent_and_writes_outbound_message(conn):
    r = reply("web", "ann@x.com", ["Hello"])
    with conn.transaction():
        enqueue_replies(conn, [r])
    with conn.transaction():
        enqueue_replies(conn, [r])  # a replay
    assert conn.execute("SELECT count(*) AS n FROM reply_outbox").fetchone()["n"] == 1
    msg = conn.execute("SELECT * FROM messages WHERE in_reply_to=%s", (r.inbound_key,)).fetchone()
    assert msg["direction"] == "outbound" and msg["author"] == "agent"


def test_whatsapp_parts_sent_once_and_in_doubt_part_reconciled(conn, app_settings, channel_api_server):
    phone = f"whatsapp:+1555{uuid.uuid4().int % 10**7:07d}"
    r = reply("whatsapp", phone, ["Part one (1/2)", "Part two (2/2)"])
    with conn.transaction():
        enqueue_replies(conn, [r])
    d = make_dispatcher(app_settings)
    sender = TwilioSender(app_settings)
    # Simulate a crash after Twilio accepted part one but before the row recorded it.
    row = d.claim(conn, "whatsapp", 10)[0]
    sender.send(row, 0, "Part one (1/2)")
    conn.execute("UPDATE reply_outbox SET next_attempt_at = now() - interval '1 second' WHERE id=%s",
                 (row["id"],))  # the lease expired
    d.run_once(conn, "whatsapp", sender)
    done = row_of(conn, r.inbound_key)
    assert done["status"] == "sent" and done["parts_sent"] == 2
    sent = httpx.get(f"{channel_api_server}/_sandbox/twilio/sent", params={"to": phone}).json()["messages"]
    assert [m["body"] for m in sent] == ["Part one (1/2)", "Part two (2/2)"]
    assert sorted(done["provider_message_ids"]) == sorted(m["sid"] for m in sent)
    assert [e.kind.value for e in d.events] == ["sent"]


def test_email_in_doubt_found_by_message_id_not_resent(conn, app_settings, channel_api_server):
    addr = f"z{uuid.uuid4().hex[:6]}@x.com"
    r = reply("email", addr, ["Hi Ann,\n\nAnswer.\n\nBest regards"], subject="Re: Order",
              html="<p>Answer</p>", headers={"In-Reply-To": "<m1@x>", "References": "<m1@x>"},
              thread_id="thr-1")
    with conn.transaction():
        enqueue_replies(conn, [r])
    d = make_dispatcher(app_settings)
    sender = GmailSender(app_settings)
    row = d.claim(conn, "email", 10)[0]
    sender.send(row, 0, row["payload"]["parts"][0])  # accepted, then the process died
    conn.execute("UPDATE reply_outbox SET next_attempt_at = now() WHERE id=%s", (row["id"],))
    d.run_once(conn, "email", sender)
    assert row_of(conn, r.inbound_key)["status"] == "sent"
    mails = [m for m in httpx.get(f"{channel_api_server}/_sandbox/gmail/sent").json()["data"]
             if m["to"] == addr]
    assert len(mails) == 1
    assert mails[0]["in_reply_to"] == "<m1@x>" and mails[0]["threadId"] == "thr-1"
    assert mails[0]["subject"] == "Re: Order" and mails[0]["html"]


def test_failures_park_with_backoff_and_open_the_breaker(conn, app_settings, channel_api_server):
    httpx.post(f"{channel_api_server}/_sandbox/twilio/faults", json={"fail_next": 100})
    try:
        phones = [f"whatsapp:+1666{uuid.uuid4().int % 10**7:07d}" for _ in range(4)]
        rs = [reply("whatsapp", p, [f"hello {i}"]) for i, p in enumerate(phones)]
        with conn.transaction():
            enqueue_replies(conn, rs)
        d = make_dispatcher(app_settings, breaker_failures=2, breaker_reset_s=60)
        d.run_once(conn, "whatsapp", TwilioSender(app_settings))
        rows = [row_of(conn, r.inbound_key) for r in rs]
        assert sorted(r["status"] for r in rows) == ["parked", "parked", "pending", "pending"]
        assert d.breakers["whatsapp"].state == "open" and d.breakers["whatsapp"].allowed() == 0
        assert all(r["attempts"] == (1 if r["status"] == "parked" else 0) for r in rows)
        assert {e.kind.value for e in d.events} == {"failed"}
        d.report_breaker(conn, "whatsapp")  # what the console's System page reads
        shown = conn.execute("SELECT state, consecutive_failures, opened_at FROM dispatcher_breakers "
                             "WHERE dispatcher = %s AND channel = 'whatsapp'", (d.name,)).fetchone()
        assert shown["state"] == "open" and shown["consecutive_failures"] == 2
        assert shown["opened_at"] is not None
    finally:
        httpx.post(f"{channel_api_server}/_sandbox/twilio/faults", json={})


def test_invalid_recipient_is_failed_not_retried(conn, app_settings):
    r = reply("whatsapp", "whatsapp-not-a-number", ["hello"])
    with conn.transaction():
        enqueue_replies(conn, [r])
    d = make_dispatcher(app_settings)
    d.run_once(conn, "whatsapp", TwilioSender(app_settings))
    row = row_of(conn, r.inbound_key)
    assert row["status"] == "failed" and "recipient" in row["last_error"]
    assert d.breakers["whatsapp"].state == "closed" and d.breakers["whatsapp"].consecutive == 0


def test_twilio_sandbox_checks_basic_auth(channel_api_server, app_settings):
    resp = httpx.post(f"{channel_api_server}/2010-04-01/Accounts/{app_settings.TWILIO_ACCOUNT_SID}"
                      "/Messages.json", data={"To": "whatsapp:+15550001111", "From": "x", "Body": "b"},
                      auth=(app_settings.TWILIO_ACCOUNT_SID, "wrong"))
    assert resp.status_code == 401


def test_circuit_breaker_half_open_probe():
    now = [0.0]
    b = CircuitBreaker(3, 10, clock=lambda: now[0])
    for _ in range(2):
        b.failure()
    assert b.state == "closed"
    b.failure()
    assert b.state == "open" and b.allowed() == 0
    now[0] = 10
    assert b.state == "half-open" and b.allowed() == 1
    b.failure()  # the probe failed: open again for a full period
    assert b.state == "open"
    now[0] = 20
    b.success()
    assert b.state == "closed" and b.allowed() > 1


def test_dispatcher_threads_deliver_on_notify(conn, app_settings):
    d = make_dispatcher(app_settings, sweep_s=30).start()  # a sweep would be too slow: NOTIFY wakes it
    try:
        import time

        time.sleep(0.5)
        r = reply("web", "ann@x.com", ["Hello"])
        with conn.transaction():
            enqueue_replies(conn, [r])
        deadline = time.monotonic() + 5
        while row_of(conn, r.inbound_key)["status"] != "sent" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert row_of(conn, r.inbound_key)["status"] == "sent"
    finally:
        d.stop()


def test_two_dispatchers_share_rows_without_double_sends(conn, app_settings, channel_api_server):
    import threading

    phones = [f"whatsapp:+1777{uuid.uuid4().int % 10**7:07d}" for _ in range(30)]
    rs = [reply("whatsapp", p, [f"hello {i}"]) for i, p in enumerate(phones)]
    with conn.transaction():
        enqueue_replies(conn, rs)
    dispatchers = [make_dispatcher(app_settings) for _ in range(2)]

    def drain(d):
        with psycopg.connect(app_settings.database_url, row_factory=dict_row, autocommit=True) as c:
            sender = TwilioSender(app_settings)
            while d.run_once(c, "whatsapp", sender, limit=3):
                pass
    threads = [threading.Thread(target=drain, args=(d,)) for d in dispatchers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert all(row_of(conn, r.inbound_key)["status"] == "sent" for r in rs)
    sent = httpx.get(f"{channel_api_server}/_sandbox/twilio/sent").json()["messages"]
    ours = [m for m in sent if m["to"] in set(phones)]
    assert sorted(m["to"] for m in ours) == sorted(phones)  # each exactly once
    assert all(len(d.events) > 0 for d in dispatchers)  # both took a share
