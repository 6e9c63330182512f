"""The event outbox: events written with the rows they describe, relayed to Kafka later."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import psycopg
from psycopg.types.json import Jsonb

NOTIFY_CHANNEL = "event_outbox"


@dataclass(frozen=True)
class OutboxEvent:
    topic: str  # logical topic name (schema.topics), the relay adds the prefix
    key: str
    value: str  # the event's JSON


@dataclass(frozen=True)
class PendingBatch:
    id: int
    events: list[OutboxEvent]


def batch_key(inbound_keys: Sequence[str]) -> str:
    return hashlib.blake2b("\n".join(sorted(inbound_keys)).encode(), digest_size=16).hexdigest()


def insert_event_batch(conn: psycopg.Connection, key: str, events: Sequence[OutboxEvent]) -> None:
    """One row for the whole batch, in the caller's transaction; NOTIFY the relay on commit."""
    if not events:
        return
    conn.execute("INSERT INTO event_outbox (batch_key, events) VALUES (%s, %s) "
                 "ON CONFLICT (batch_key) DO NOTHING",
                 (key, Jsonb([[e.topic, e.key, e.value] for e in events])))
    conn.execute("SELECT pg_notify(%s, '')", (NOTIFY_CHANNEL,))


def claim_pending(conn: psycopg.Connection, limit: int) -> list[PendingBatch]:
    """Unpublished batches in order, locked for this relay (others skip them)."""
    rows = conn.execute("SELECT id, events FROM event_outbox WHERE published_at IS NULL "
                        "ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED", (limit,)).fetchall()
    return [PendingBatch(r[0] if isinstance(r, tuple) else r["id"],
                         [OutboxEvent(*e) for e in (r[1] if isinstance(r, tuple) else r["events"])])
            for r in rows]


def mark_published(conn: psycopg.Connection, ids: Sequence[int]) -> None:
    conn.execute("UPDATE event_outbox SET published_at = now() WHERE id = ANY(%s)", (list(ids),))


def pending_count(conn: psycopg.Connection) -> int:
    row = conn.execute("SELECT count(*) AS n FROM event_outbox WHERE published_at IS NULL").fetchone()
    return row[0] if isinstance(row, tuple) else row["n"]
