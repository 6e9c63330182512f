"""Answered tickets close after the quiet period; the next customer message reopens them."""

from __future__ import annotations

import os
import subprocess
import sys

import psycopg



def close_quiet(db: str, hours: str = "48") -> str:
    result = subprocess.run([sys.executable, "-m", "fte.cli", "tickets", "close-quiet", "--hours", hours],
                            env={**os.environ, "DATABASE_URL": db}, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def setup(db: str) -> None:
    with psycopg.connect(db) as conn:
        conn.execute("""
        INSERT INTO customers (id, display_name) VALUES (1, 'Ada');
        INSERT INTO conversations (id, customer_id, first_channel, last_channel, opened_at, last_message_at)
          VALUES (1, 1, 'web', 'web', now() - interval '3 days', now() - interval '3 days');
        INSERT INTO tickets (id, customer_id, conversation_id, channel, status, created_at, updated_at) VALUES
          ('T-quiet', 1, 1, 'web', 'answered', now() - interval '3 days', now() - interval '3 days'),
          ('T-recent', 1, 1, 'web', 'answered', now() - interval '3 days', now() - interval '3 days'),
          ('T-person', 1, 1, 'web', 'answered', now() - interval '3 days', now() - interval '3 days'),
          ('T-open', 1, 1, 'web', 'open', now() - interval '3 days', now() - interval '3 days');
        INSERT INTO messages (channel, channel_message_id, direction, author, customer_id, conversation_id,
                              ticket_id, body, occurred_at) VALUES
          ('web', 'q1', 'inbound', 'customer', 1, 1, 'T-quiet', 'hi', now() - interval '3 days'),
          ('web', 'r1', 'inbound', 'customer', 1, 1, 'T-recent', 'hi', now() - interval '2 hours');
        INSERT INTO escalations (customer_id, conversation_id, ticket_id, inbound_key, channel, reason, status)
          VALUES (1, 1, 'T-person', 'web:p1', 'web', 'refund', 'assigned');
        """)


def status(db: str) -> dict[str, tuple]:
    with psycopg.connect(db) as conn:
        return {r[0]: r[1:] for r in conn.execute(
            "SELECT id, status, closed_reason, reopen_count, resolved_at IS NOT NULL FROM tickets").fetchall()}


def test_quiet_answered_tickets_close_and_reopen_on_a_new_message(migrated_db):
    setup(migrated_db)
    assert "closed 1 quiet ticket(s)" in close_quiet(migrated_db)
    s = status(migrated_db)
    assert s["T-quiet"] == ("closed", "quiet", 0, True)
    assert s["T-recent"][0] == "answered"  # a message 2 hours ago: not quiet
    assert s["T-person"][0] == "answered"  # a person is working on it
    assert s["T-open"][0] == "open"  # never answered
    assert "closed 0 quiet ticket(s)" in close_quiet(migrated_db)  # idempotent

    # An outbound message does not reopen; the customer's next message does (trigger).
    with psycopg.connect(migrated_db) as conn:
        conn.execute("INSERT INTO messages (channel, channel_message_id, direction, author, customer_id, "
                     "conversation_id, ticket_id, body, occurred_at) VALUES "
                     "('web', 'o2', 'outbound', 'agent', 1, 1, 'T-quiet', 'bye', now())")
    assert status(migrated_db)["T-quiet"][0] == "closed"
    with psycopg.connect(migrated_db) as conn:
        conn.execute("INSERT INTO messages (channel, channel_message_id, direction, author, customer_id, "
                     "conversation_id, ticket_id, body, occurred_at) VALUES "
                     "('web', 'q2', 'inbound', 'customer', 1, 1, 'T-quiet', 'it broke again', now())")
    assert status(migrated_db)["T-quiet"] == ("open", None, 1, False)
    # A replayed copy of the same message (ON CONFLICT in the flow) changes nothing more.
    with psycopg.connect(migrated_db) as conn:
        conn.execute("INSERT INTO messages (channel, channel_message_id, direction, author, customer_id, "
                     "conversation_id, ticket_id, body, occurred_at) VALUES "
                     "('web', 'q2', 'inbound', 'customer', 1, 1, 'T-quiet', 'it broke again', now()) "
                     "ON CONFLICT DO NOTHING")
    assert status(migrated_db)["T-quiet"][2] == 1
