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


def test_the_support_flow_reopens_a_quiet_closed_ticket(migrated_db, kafka_bootstrap, services, tmp_path):
    """End to end: the flow attaches the customer's next message to the quiet-closed ticket."""
    import uuid

    from testkit import wait_for

    from fte.kafka import ensure_topics
    from tests.flows.support_harness import inbound, publish

    prefix = f"t{uuid.uuid4().hex[:10]}."
    ensure_topics(kafka_bootstrap, prefix)
    env = {"DATABASE_URL": migrated_db, "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "TOPIC_PREFIX": prefix,
           "RECOVERY_DIR": str(tmp_path / "recovery"), "LOG_LEVEL": "WARNING",
           "CONVERSATION_REOPEN_HOURS": "200"}  # the conversation outlives the quiet period
    services(["flow"], env).wait_ready()
    phone = "+447700900555"

    def ticket_of(cmid: str):
        with psycopg.connect(migrated_db) as conn:
            # Handled: the flow's second transaction (replies, statuses) has committed too.
            row = conn.execute("SELECT ticket_id FROM messages WHERE channel_message_id = %s "
                               "AND handled_at IS NOT NULL", (cmid,)).fetchone()
        return row and row[0]

    first = inbound("whatsapp", "my parcel has not arrived", phone=phone)
    publish(env, [first])
    ticket = wait_for(lambda: ticket_of(first.channel_message_id), 120, "first message stored")
    # Answered three days ago and quiet since.
    with psycopg.connect(migrated_db) as conn:
        conn.execute("UPDATE tickets SET status = 'answered', updated_at = now() - interval '3 days' WHERE id = %s",
                     (ticket,))
        conn.execute("UPDATE messages SET occurred_at = occurred_at - interval '3 days' WHERE ticket_id = %s",
                     (ticket,))
        conn.execute("UPDATE conversations SET last_message_at = last_message_at - interval '3 days'")
        conn.execute("UPDATE escalations SET status = 'resolved' WHERE ticket_id = %s", (ticket,))
    assert "closed 1 quiet ticket(s)" in close_quiet(migrated_db)
    assert status(migrated_db)[ticket][:2] == ("closed", "quiet")

    second = inbound("whatsapp", "it still has not arrived", phone=phone)
    publish(env, [second])
    assert wait_for(lambda: ticket_of(second.channel_message_id), 120, "second message stored") == ticket
    state, reason, reopens, _ = status(migrated_db)[ticket]
    assert state != "closed" and reason is None and reopens == 1
