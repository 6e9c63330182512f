"""SQL of the support flow: the batched context read and the batch's set-based writes.

Every function runs in the caller's connection/transaction and takes or returns typed values
(flows/support_model.py); writes are idempotent (ON CONFLICT on message, inbound and ticket
keys) so a batch re-run after recovery changes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from flows.support_model import (
    ActiveEscalation,
    Conversation,
    PlannedEscalation,
    PlannedMessage,
    PlannedTicket,
    Ticket,
)

HISTORY_SQL = """
SELECT * FROM (
  SELECT m.customer_id, m.conversation_id, m.channel, m.channel_message_id, m.direction, m.author,
         m.subject, m.body, m.occurred_at, m.metadata->>'kind' AS kind,
         row_number() OVER (PARTITION BY m.customer_id ORDER BY m.occurred_at DESC, m.id DESC) AS rn
  FROM messages m WHERE m.customer_id = ANY(%s)
) h WHERE rn <= %s ORDER BY customer_id, occurred_at, rn DESC
"""


def _get(row, key: str, index: int) -> Any:
    return row[key] if isinstance(row, dict) else row[index]


# --- reads (load_context) ---------------------------------------------------------------------
def handled_keys(conn: psycopg.Connection, keys: Sequence[tuple[str, str]]) -> set[tuple[str, str]]:
    """(channel, channel_message_id) of the given messages already handled (a replay)."""
    rows = conn.execute(
        "SELECT channel, channel_message_id FROM messages m JOIN unnest(%s::text[], %s::text[]) "
        "AS k(channel, channel_message_id) USING (channel, channel_message_id) "
        "WHERE m.handled_at IS NOT NULL", ([k[0] for k in keys], [k[1] for k in keys])).fetchall()
    return {(_get(r, "channel", 0), _get(r, "channel_message_id", 1)) for r in rows}


def customer_names(conn: psycopg.Connection, customers: Sequence[int]) -> dict[int, str | None]:
    rows = conn.execute("SELECT id, display_name FROM customers WHERE id = ANY(%s)",
                        (list(customers),)).fetchall()
    return {_get(r, "id", 0): _get(r, "display_name", 1) for r in rows}


def latest_conversations(conn: psycopg.Connection, customers: Sequence[int]) -> dict[int, Conversation]:
    """Each customer's open conversation, else their latest one."""
    rows = conn.execute(
        "SELECT DISTINCT ON (customer_id) id, customer_id, status, last_channel, last_message_at "
        "FROM conversations WHERE customer_id = ANY(%s) "
        "ORDER BY customer_id, (status = 'open') DESC, last_message_at DESC",
        (list(customers),)).fetchall()
    out = {}
    for r in rows:
        c = Conversation(_get(r, "id", 0), _get(r, "customer_id", 1), _get(r, "status", 2),
                         _get(r, "last_channel", 3), _get(r, "last_message_at", 4))
        out[c.customer_id] = c
    return out


def active_tickets(conn: psycopg.Connection, conversation_ids: Sequence[int]) -> dict[int, Ticket]:
    """Each conversation's newest ticket that is not resolved or closed; a ticket closed for
    being quiet stays attachable (a trigger reopens it on the customer's next message)."""
    rows = conn.execute(
        "SELECT DISTINCT ON (conversation_id) id, conversation_id, priority, status FROM tickets "
        "WHERE conversation_id = ANY(%s) "
        "AND (status NOT IN ('resolved', 'closed') OR closed_reason = 'quiet') "
        "ORDER BY conversation_id, created_at DESC", (list(conversation_ids),)).fetchall()
    return {_get(r, "conversation_id", 1): Ticket(_get(r, "id", 0), _get(r, "conversation_id", 1),
                                                  _get(r, "priority", 2), _get(r, "status", 3))
            for r in rows}


def active_escalations(conn: psycopg.Connection, customers: Sequence[int]) -> dict[int, ActiveEscalation]:
    rows = conn.execute("SELECT id, customer_id, holding_ack_sent FROM escalations "
                        "WHERE customer_id = ANY(%s) AND status IN ('open', 'assigned')",
                        (list(customers),)).fetchall()
    return {_get(r, "customer_id", 1): ActiveEscalation(_get(r, "id", 0), _get(r, "customer_id", 1),
                                                        _get(r, "holding_ack_sent", 2))
            for r in rows}


def recent_history(conn: psycopg.Connection, customers: Sequence[int], depth: int) -> dict[int, list[dict]]:
    """The last `depth` messages of each customer, oldest first."""
    out: dict[int, list[dict]] = {c: [] for c in customers}
    with conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        for r in cur.execute(HISTORY_SQL, (list(customers), depth)).fetchall():
            out[r["customer_id"]].append(r)
    return out


def reserve_ids(conn: psycopg.Connection, n: int) -> tuple[list[int], list[int]]:
    """n conversation ids and n escalation ids, so the decide stage can name new rows."""
    if n <= 0:
        return [], []
    rows = conn.execute("SELECT nextval('conversations_id_seq') AS c, nextval('escalations_id_seq') AS e "
                        "FROM generate_series(1, %s)", (n,)).fetchall()
    return [_get(r, "c", 0) for r in rows], [_get(r, "e", 1) for r in rows]


# --- writes (persist, one transaction) ----------------------------------------------------------
def close_conversations(conn: psycopg.Connection, ids: Sequence[int]) -> None:
    if ids:
        conn.execute("UPDATE conversations SET status = 'closed', closed_at = now() "
                     "WHERE id = ANY(%s) AND status = 'open'", (list(ids),))


def reopen_conversations(conn: psycopg.Connection, ids: Sequence[int]) -> None:
    if ids:
        conn.execute("UPDATE conversations SET status = 'open', closed_at = NULL WHERE id = ANY(%s)",
                     (list(ids),))


def insert_conversations(conn: psycopg.Connection, rows: Sequence[Conversation], first_channel: dict[int, str]) -> None:
    """New conversations with their reserved ids (a concurrent open one raises UniqueViolation)."""
    if rows:
        conn.cursor().executemany(
            "INSERT INTO conversations (id, customer_id, first_channel, last_channel, opened_at, "
            "last_message_at) VALUES (%s, %s, %s, %s, %s, %s)",
            [(c.id, c.customer_id, first_channel[c.id], c.last_channel, c.last_message_at,
              c.last_message_at) for c in rows])


def touch_conversations(conn: psycopg.Connection, rows: Sequence[Conversation]) -> None:
    if rows:
        conn.cursor().executemany(
            "UPDATE conversations SET last_channel = %s, last_message_at = GREATEST(last_message_at, %s) "
            "WHERE id = %s", [(c.last_channel, c.last_message_at, c.id) for c in rows])


def insert_channel_switches(conn: psycopg.Connection, rows: Sequence[tuple]) -> None:
    """(conversation id, from, to, inbound key, at)."""
    if rows:
        conn.cursor().executemany(
            "INSERT INTO channel_switches (conversation_id, from_channel, to_channel, inbound_key, "
            "switched_at) VALUES (%s, %s, %s, %s, %s) ON CONFLICT (inbound_key) DO NOTHING", rows)


def upsert_tickets(conn: psycopg.Connection, rows: Sequence[PlannedTicket]) -> None:
    """Tickets the batch opens. A web ticket row exists from the form submission; the flow
    links it to the customer and conversation (the ingress never sets those)."""
    if rows:
        conn.cursor().executemany(
            "INSERT INTO tickets (id, customer_id, conversation_id, channel, subject, category, "
            "contact_email, contact_name, source_inbound_key, created_at) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
            "ON CONFLICT (id) DO UPDATE SET customer_id = EXCLUDED.customer_id, "
            "conversation_id = EXCLUDED.conversation_id, updated_at = now()",
            [(t.id, t.customer_id, t.conversation_id, t.channel, t.subject, t.category,
              t.contact_email, t.contact_name, t.source_inbound_key, t.created_at) for t in rows])


def insert_escalations(conn: psycopg.Connection, rows: Sequence[PlannedEscalation]) -> None:
    if rows:
        conn.cursor().executemany(
            "INSERT INTO escalations (id, customer_id, conversation_id, ticket_id, inbound_key, channel, "
            "reason, detail, priority, holding_ack_sent) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,false) "
            "ON CONFLICT (inbound_key) DO NOTHING",
            [(e.id, e.customer_id, e.conversation_id, e.ticket_id, e.inbound_key, e.channel,
              e.reason, e.detail, e.priority) for e in rows])


def escalate_tickets(conn: psycopg.Connection, rows: Sequence[PlannedEscalation]) -> None:
    """After the batch's messages are in (a quiet-closed ticket is reopened by their insert
    trigger first), the escalated tickets' status and raised priority."""
    if rows:
        conn.cursor().executemany(
            "UPDATE tickets SET status = 'escalated', updated_at = now(), priority = "
            "CASE WHEN %s IN ('high', 'urgent') THEN %s ELSE priority END WHERE id = %s",
            [(e.priority, e.priority, e.ticket_id) for e in rows])


INSERT_INBOUND = """
INSERT INTO messages (channel, channel_message_id, direction, author, customer_id, conversation_id,
                      ticket_id, subject, body, sentiment, metadata, occurred_at,
                      handled_as, handled_at, escalation_id)
SELECT channel, cmid, 'inbound', 'customer', customer_id, conversation_id, ticket_id, subject, body,
       sentiment, metadata, occurred_at, handled_as, now(), escalation_id
  FROM unnest(%s::text[], %s::text[], %s::bigint[], %s::bigint[], %s::text[], %s::text[], %s::text[],
              %s::float8[], %s::jsonb[], %s::timestamptz[], %s::text[], %s::bigint[])
       AS r(channel, cmid, customer_id, conversation_id, ticket_id, subject, body, sentiment,
            metadata, occurred_at, handled_as, escalation_id)
ON CONFLICT (channel, channel_message_id) DO UPDATE
    SET customer_id = EXCLUDED.customer_id, conversation_id = EXCLUDED.conversation_id,
        ticket_id = EXCLUDED.ticket_id, sentiment = EXCLUDED.sentiment,
        handled_as = EXCLUDED.handled_as, handled_at = EXCLUDED.handled_at,
        escalation_id = EXCLUDED.escalation_id
    WHERE messages.handled_at IS NULL
"""


def insert_handled_inbound(conn: psycopg.Connection, rows: Sequence[PlannedMessage]) -> None:
    """The inbound messages, already marked handled (they commit with their outcome): one
    statement for the batch. A message twice in a batch is written once (the first; the
    second would find it handled)."""
    first: dict[tuple[str, str], PlannedMessage] = {}
    for m in rows:
        first.setdefault((m.channel, m.channel_message_id), m)
    if first:
        ms = list(first.values())
        conn.execute(INSERT_INBOUND, (
            [m.channel for m in ms], [m.channel_message_id for m in ms], [m.customer_id for m in ms],
            [m.conversation_id for m in ms], [m.ticket_id for m in ms], [m.subject for m in ms],
            [m.body for m in ms], [m.sentiment for m in ms], [Jsonb(m.metadata) for m in ms],
            [m.occurred_at for m in ms], [m.handled_as for m in ms], [m.escalation_id for m in ms]))


def mark_holding_sent(conn: psycopg.Connection, escalation_ids: Sequence[int]) -> None:
    if escalation_ids:
        conn.execute("UPDATE escalations SET holding_ack_sent = true WHERE id = ANY(%s)",
                     (list(escalation_ids),))


def insert_kb_lookups(conn: psycopg.Connection, rows: Sequence[tuple]) -> None:
    """(inbound key, channel, query, top slug, score, answered), one statement."""
    if rows:
        cols = list(zip(*rows))
        conn.execute(
            "INSERT INTO kb_lookups (inbound_key, channel, query, top_slug, score, answered) "
            "SELECT * FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[], %s::float8[], "
            "%s::bool[]) ON CONFLICT (inbound_key) DO NOTHING", [list(c) for c in cols])


def mark_tickets_answered(conn: psycopg.Connection, ticket_ids: Sequence[str]) -> None:
    if ticket_ids:
        conn.execute("UPDATE tickets SET status = 'answered', updated_at = now() "
                     "WHERE id = ANY(%s) AND status = 'open'", (sorted(set(ticket_ids)),))


UPSERT_PROGRESS = """
INSERT INTO flow_progress (flow, topic, partition, next_offset)
VALUES (%s, %s, %s, %s)
ON CONFLICT (flow, topic, partition) DO UPDATE
    SET next_offset = GREATEST(flow_progress.next_offset, EXCLUDED.next_offset), updated_at = now()
"""


def record_progress(conn: psycopg.Connection, flow: str, last: dict[tuple[str, int], int]) -> None:
    """flow_progress: the next offset after the last one this batch covered, per partition."""
    if last:
        conn.cursor().executemany(UPSERT_PROGRESS, [(flow, t, p, o + 1) for (t, p), o in sorted(last.items())])
