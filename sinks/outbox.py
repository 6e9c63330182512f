"""The reply outbox: one row per inbound message (or human reply), sent at most once.

`enqueue_replies` is the only way a reply reaches a customer: the support flow (agent
answers, acknowledgements) and the console (human replies) call it inside their own
transaction. A replay after recovery hits ON CONFLICT (inbound_key) and enqueues nothing.
The outbound `messages` row is written at the same time (the status page and the agent's
history read it); the dispatcher (`sinks/dispatcher.py`) delivers the row.
"""

from __future__ import annotations

from collections.abc import Sequence

import psycopg
from psycopg.types.json import Jsonb

from schema.events import Reply

NOTIFY_CHANNEL = "reply_outbox"

INSERT_OUTBOX = """
INSERT INTO reply_outbox (inbound_key, kind, channel, customer_id, conversation_id, ticket_id,
                          escalation_id, recipient, subject, body, payload, created_at)
VALUES (%(inbound_key)s, %(kind)s, %(channel)s, %(customer_id)s, %(conversation_id)s,
        %(ticket_id)s, %(escalation_id)s, %(recipient)s, %(subject)s, %(body)s, %(payload)s,
        %(created_at)s)
ON CONFLICT (inbound_key) DO NOTHING
"""

AUTHOR_BY_KIND = {"agent": "agent", "clarify": "agent", "human": "human",
                  "escalation_ack": "system", "holding": "system"}

INSERT_OUTBOUND_MESSAGE = """
INSERT INTO messages (channel, channel_message_id, direction, author, customer_id,
                      conversation_id, ticket_id, escalation_id, in_reply_to, subject, body,
                      metadata, occurred_at)
VALUES (%(channel)s, %(channel_message_id)s, 'outbound', %(author)s, %(customer_id)s,
        %(conversation_id)s, %(ticket_id)s, %(escalation_id)s, %(inbound_key)s, %(subject)s,
        %(body)s, %(metadata)s, %(created_at)s)
ON CONFLICT (channel, channel_message_id) DO NOTHING
"""


def outbound_message_id(inbound_key: str) -> str:
    """The outbound message's own id: one reply per inbound key."""
    return f"reply:{inbound_key}"


def _row(reply: Reply, escalation_id: int | None) -> dict:
    return {
        "inbound_key": reply.inbound_key, "kind": reply.kind.value, "channel": reply.channel.value,
        "customer_id": reply.customer_id, "conversation_id": reply.conversation_id,
        "ticket_id": reply.ticket_id, "escalation_id": escalation_id,
        "recipient": reply.recipient, "subject": reply.subject, "body": reply.body,
        "payload": Jsonb({"parts": reply.parts or [reply.body], "html": reply.html,
                          "headers": reply.headers, "thread_id": reply.thread_id}),
        "created_at": reply.created_at,
        "channel_message_id": outbound_message_id(reply.inbound_key),
        "author": AUTHOR_BY_KIND.get(reply.kind.value, "system"),
        "metadata": Jsonb({"kind": reply.kind.value}),
    }


def enqueue_replies(conn: psycopg.Connection, replies: Sequence[Reply], *,
                    escalation_id: int | None = None,
                    escalation_ids: Sequence[int | None] | None = None) -> None:
    """Insert outbox rows (once per inbound key) and the outbound messages; NOTIFY on commit.

    `escalation_id` applies to every reply; `escalation_ids` gives one per reply instead.
    Runs in the caller's transaction (NOTIFY is delivered when it commits).
    """
    if not replies:
        return
    ids = list(escalation_ids) if escalation_ids is not None else [escalation_id] * len(replies)
    rows = [_row(r, e) for r, e in zip(replies, ids)]
    with conn.cursor() as cur:
        cur.executemany(INSERT_OUTBOX, rows)
        cur.executemany(INSERT_OUTBOUND_MESSAGE, rows)
        for channel in sorted({r["channel"] for r in rows}):
            cur.execute("SELECT pg_notify(%s, %s)", (NOTIFY_CHANNEL, channel))
