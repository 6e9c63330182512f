"""SQL of batched identity resolution (sinks/identity.py: resolve_batch): set-based reads
and writes for a batch's cache misses. Runs in the caller's transaction."""

from __future__ import annotations

from collections.abc import Sequence

import psycopg


def own_customers(conn: psycopg.Connection, rows: Sequence[tuple[str, str | None]]) -> dict[str, int]:
    """(origin inbound key, display name) -> the customer of a message with nothing verified,
    created once per origin (a replay finds the same one)."""
    if not rows:
        return {}
    out = conn.execute(
        "INSERT INTO customers (origin_inbound_key, display_name) "
        "SELECT * FROM unnest(%s::text[], %s::text[]) "
        "ON CONFLICT (origin_inbound_key) DO UPDATE SET updated_at = now() "
        "RETURNING origin_inbound_key, id",
        ([r[0] for r in rows], [r[1] for r in rows])).fetchall()
    return {r[0]: r[1] for r in out}


def verified_owners(conn: psycopg.Connection, idents: Sequence[tuple[str, str]]) -> dict[tuple[str, str], int]:
    """(kind, value) -> customer of each verified identifier already linked."""
    if not idents:
        return {}
    rows = conn.execute(
        "SELECT ci.kind, ci.value, ci.customer_id FROM customer_identifiers ci "
        "JOIN unnest(%s::text[], %s::text[]) AS w(kind, value) USING (kind, value) "
        "WHERE ci.verified", ([i[0] for i in idents], [i[1] for i in idents])).fetchall()
    return {(r[0], r[1]): r[2] for r in rows}


def fill_display_names(conn: psycopg.Connection, names: dict[int, str]) -> None:
    """A customer without a name takes the one a message carried."""
    if names:
        ids = sorted(names)
        conn.execute("UPDATE customers c SET display_name = v.name, updated_at = now() "
                     "FROM unnest(%s::bigint[], %s::text[]) AS v(id, name) "
                     "WHERE c.id = v.id AND c.display_name IS NULL",
                     (ids, [names[i] for i in ids]))
