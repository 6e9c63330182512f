"""Concurrent delivery: several workers per channel in each of two running dispatchers, against
the real Postgres and the local Twilio API server (through the twilio SDK)."""

from __future__ import annotations

import time
import uuid

import httpx
import psycopg
import pytest
from psycopg.rows import dict_row

from fte.settings import Settings
from schema.events import Channel, Reply, ReplyKind
from sinks.dispatcher import Dispatcher
from sinks.outbox import enqueue_replies
from sinks.senders import TwilioSender


@pytest.fixture
def app_settings(channel_api_server, migrated_db) -> Settings:
    return Settings(DATABASE_URL=migrated_db, TWILIO_API_BASE=channel_api_server,
                    GMAIL_DISCOVERY_URL=f"{channel_api_server}/discovery/gmail/v1/rest")


def test_workers_of_two_dispatchers_send_each_row_exactly_once(migrated_db, app_settings,
                                                                channel_api_server):
    with psycopg.connect(migrated_db, row_factory=dict_row, autocommit=True) as conn:
        conn.execute("INSERT INTO customers (id, display_name) VALUES (1, 'Ann')")
        conn.execute("INSERT INTO messages (channel, channel_message_id, direction, author, customer_id, "
                     "body, occurred_at) VALUES ('whatsapp', 'SMann', 'inbound', 'customer', 1, 'hi', "
                     "now() - interval '1 minute')")
        # 60 recipients, three of whom get two replies each.
        phones = [f"whatsapp:+1888{uuid.uuid4().int % 10**7:07d}" for _ in range(60)]
        targets = phones + phones[:3]
        replies = [Reply(inbound_key=f"whatsapp:{uuid.uuid4().hex}", kind=ReplyKind.AGENT,
                         channel=Channel.WHATSAPP, customer_id=1, recipient=p, body=f"reply {i}",
                         parts=[f"reply {i}"]) for i, p in enumerate(targets)]
        built: list[int] = []

        def factory():
            built.append(1)
            return TwilioSender(app_settings)

        dispatchers = []
        for _ in range(2):
            d = Dispatcher(migrated_db, {"whatsapp": factory}, retry_base_s=0, sweep_s=0.2, concurrency=4)
            d.events = []
            d.publish = d.events.append
            dispatchers.append(d.start())
        try:
            with conn.transaction():
                enqueue_replies(conn, replies)
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                left = conn.execute("SELECT count(*) AS n FROM reply_outbox WHERE status <> 'sent'").fetchone()
                if left["n"] == 0:
                    break
                time.sleep(0.2)
        finally:
            for d in dispatchers:
                d.stop()
        rows = conn.execute("SELECT * FROM reply_outbox").fetchall()
    assert len(rows) == len(replies) and all(r["status"] == "sent" for r in rows)
    assert all(r["attempts"] == 1 and len(r["provider_message_ids"]) == 1 for r in rows)
    sent = httpx.get(f"{channel_api_server}/_sandbox/twilio/sent").json()["messages"]
    ours = [m for m in sent if m["to"] in set(phones)]
    assert sorted((m["to"], m["body"]) for m in ours) == sorted(
        (r.recipient, r.body) for r in replies)  # each reply exactly once, nothing else
    events = [e for d in dispatchers for e in d.events]
    assert sorted(e.inbound_key for e in events) == sorted(r.inbound_key for r in replies)
    assert all(d.events for d in dispatchers)  # both dispatchers took a share
    assert len(built) > 2  # several workers, each with its own sender
