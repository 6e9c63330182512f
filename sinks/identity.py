"""Identity resolution against Postgres (`customer_identifiers` is the truth).

`resolve_customer` finds or creates the customer owning a message's identifiers. What may
link is decided by `flows.linking.decide_links`: only verified identifiers are looked up
and linked; when they belong to two existing customers the newer is merged into the older
one — conversations, messages, tickets, escalations and outbox rows move,
`customer_merges` records it — all in one transaction. A message with no verified
identifier gets a customer of its own (its identifiers stay contact details of its
ticket). `link_verified` links an identifier proved later (a web-form code or link).
Concurrent workers are serialised per identifier by an advisory lock.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import psycopg
from psycopg.types.json import Jsonb

from flows.linking import decide_links, survivor_and_merged
from schema.events import Identifier
from schema.queries import identity as q


def _lock_key(ident: Identifier) -> int:
    digest = hashlib.blake2b(f"{ident.kind.value}:{ident.value}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def survivor_of(conn: psycopg.Connection, customer_id: int) -> int:
    """Follow `merged_into` to the customer that absorbed this one."""
    seen = set()
    while customer_id not in seen:
        seen.add(customer_id)
        row = conn.execute("SELECT merged_into FROM customers WHERE id = %s", (customer_id,)).fetchone()
        if row is None or row[0] is None:
            return customer_id
        customer_id = row[0]
    return customer_id


def survivors(conn: psycopg.Connection, customer_ids: Sequence[int]) -> dict[int, int]:
    """Batch form of `survivor_of` (one query per merge depth, usually one)."""
    mapping = {c: c for c in customer_ids}
    pending = set(customer_ids)
    for _ in range(8):
        if not pending:
            break
        rows = conn.execute("SELECT id, merged_into FROM customers WHERE id = ANY(%s) "
                            "AND merged_into IS NOT NULL", (list(pending),)).fetchall()
        moved = {r[0]: r[1] for r in rows}
        for original, current in mapping.items():
            if current in moved:
                mapping[original] = moved[current]
        pending = set(moved.values())
    return mapping


def resolve_customer(conn: psycopg.Connection, identifiers: Sequence[Identifier], *,
                     channel: str, display_name: str | None = None,
                     origin: str | None = None) -> tuple[int, bool]:
    """(customer id, merged?) for normalised identifiers; runs in the caller's transaction.
    `origin` (the message's inbound key) makes the customer of a message with nothing
    verified the same one on a replay."""
    decision = decide_links(identifiers)
    if decision.new_customer:
        customer_id = conn.execute(
            "INSERT INTO customers (display_name, origin_inbound_key) VALUES (%s, %s) "
            "ON CONFLICT (origin_inbound_key) DO UPDATE SET updated_at = now() RETURNING id",
            (display_name, origin)).fetchone()[0]
        return survivor_of(conn, customer_id), False
    return _link(conn, decision.link, channel=channel, verified_by=channel,
                 display_name=display_name)


def resolve_batch(conn: psycopg.Connection, items: Sequence[tuple[Sequence[Identifier], str, str | None, str]],
                  *, fatal: tuple[type[BaseException], ...] = (psycopg.OperationalError,)
                  ) -> list[int | Exception]:
    """`resolve_customer` for many messages, (identifiers, channel, display name, origin)
    each: the customer id, or the exception that message's resolution raised.

    The same rules, with fewer round trips: messages with nothing verified get their own
    customers in one statement; a single verified identifier already linked is found in one
    lookup (both in one transaction, with one survivor query). Everything else (a verified
    identifier seen for the first time, several verified ones that may merge customers) goes
    through `resolve_customer` one message at a time, in its own transaction, as does the
    whole batch if the set-based transaction fails (so a bad message fails alone)."""
    decisions = [decide_links(idents) for idents, *_ in items]
    own = [i for i, d in enumerate(decisions) if d.new_customer]
    single = [i for i, d in enumerate(decisions) if len(d.link) == 1]
    out: list[int | Exception | None] = [None] * len(items)
    try:
        with conn.transaction():
            created = q.own_customers(conn, list({items[i][3]: items[i][2] for i in own}.items()))
            owners = q.verified_owners(conn, sorted({(decisions[i].link[0].kind.value,
                                                      decisions[i].link[0].value) for i in single}))
            found = {i: owners[(decisions[i].link[0].kind.value, decisions[i].link[0].value)]
                     for i in single if (decisions[i].link[0].kind.value, decisions[i].link[0].value) in owners}
            ids = {i: created[items[i][3]] for i in own} | found
            alive = survivors(conn, sorted(set(ids.values())))
            q.fill_display_names(conn, {alive[ids[i]]: items[i][2] for i in found if items[i][2]})
            for i, cid in ids.items():
                out[i] = alive[cid]
    except fatal:
        raise
    except Exception:  # noqa: BLE001 -- resolve one at a time below, so only a bad message fails
        out = [None] * len(items)
    for i, value in enumerate(out):
        if value is not None:
            continue
        idents, channel, name, origin = items[i]
        try:
            with conn.transaction():
                out[i] = resolve_customer(conn, idents, channel=channel, display_name=name,
                                          origin=origin)[0]
        except fatal:
            raise
        except Exception as exc:  # noqa: BLE001 -- the caller dead-letters this message
            out[i] = exc
    return out  # type: ignore[return-value]


def link_verified(conn: psycopg.Connection, customer_id: int, identifier: Identifier, *,
                  verified_by: str) -> tuple[int, bool]:
    """Link an identifier proved after the fact to `customer_id` (merging with its owner, if
    any): (surviving customer id, merged?). Runs in the caller's transaction."""
    if not identifier.verified:
        raise ValueError("only a verified identifier may be linked")
    return _link(conn, (identifier,), channel="web", verified_by=verified_by,
                 also=survivor_of(conn, customer_id))


def _link(conn: psycopg.Connection, idents: Sequence[Identifier], *, channel: str, verified_by: str,
          display_name: str | None = None, also: int | None = None) -> tuple[int, bool]:
    for ident in sorted(idents, key=lambda i: (i.kind.value, i.value)):
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_lock_key(ident),))
    kinds = [i.kind.value for i in idents]
    values = [i.value for i in idents]
    rows = conn.execute(
        "SELECT ci.customer_id FROM customer_identifiers ci "
        "JOIN unnest(%s::text[], %s::text[]) AS w(kind, value) USING (kind, value) "
        "WHERE ci.verified", (kinds, values)).fetchall()
    owners = {survivor_of(conn, r[0]) for r in rows} | ({also} if also is not None else set())
    customer_id, others = survivor_and_merged(owners)
    if customer_id is None:
        customer_id = conn.execute("INSERT INTO customers (display_name) VALUES (%s) RETURNING id",
                                   (display_name,)).fetchone()[0]
    for other in others:
        merge_customers(conn, survivor=customer_id, merged=other,
                        reason=f"verified identifiers seen together on {channel}")
    if display_name:
        conn.execute("UPDATE customers SET display_name = coalesce(display_name, %s), "
                     "updated_at = now() WHERE id = %s", (display_name, customer_id))
    # An unproved row left from before migration 030 is taken over by the proved owner.
    conn.execute(
        "INSERT INTO customer_identifiers (customer_id, kind, value, first_channel, verified, verified_by) "
        "SELECT %s, kind, value, %s, true, %s FROM unnest(%s::text[], %s::text[]) AS w(kind, value) "
        "ON CONFLICT (kind, value) DO UPDATE SET customer_id = EXCLUDED.customer_id, verified = true, "
        "verified_by = EXCLUDED.verified_by WHERE NOT customer_identifiers.verified",
        (customer_id, channel, verified_by, kinds, values))
    return customer_id, bool(others)


def merge_customers(conn: psycopg.Connection, *, survivor: int, merged: int, reason: str) -> dict:
    """Move everything of `merged` to `survivor`; both keep their rows (merged_into set)."""
    moved: dict[str, int] = {}
    # One open conversation per customer: the survivor's stays open, the other one closes
    # (its messages move into the survivor's history either way).
    survivor_open = conn.execute("SELECT id FROM conversations WHERE customer_id = %s AND "
                                 "status = 'open'", (survivor,)).fetchone()
    if survivor_open:
        conn.execute("UPDATE conversations SET status = 'closed', closed_at = now() "
                     "WHERE customer_id = %s AND status = 'open'", (merged,))
    # At most one active escalation per customer: keep the survivor's (or the moved one).
    survivor_active = conn.execute("SELECT id FROM escalations WHERE customer_id = %s AND "
                                   "status IN ('open', 'assigned')", (survivor,)).fetchone()
    if survivor_active:
        conn.execute("UPDATE escalations SET status = 'resolved', resolved_at = now(), "
                     "resolved_by = 'merge', resolution_note = %s WHERE customer_id = %s "
                     "AND status IN ('open', 'assigned')",
                     (f"merged into escalation {survivor_active[0]}", merged))
    for table in ("conversations", "messages", "tickets", "escalations", "reply_outbox",
                  "customer_identifiers"):
        cur = conn.execute(f"UPDATE {table} SET customer_id = %s WHERE customer_id = %s",
                           (survivor, merged))
        moved[table] = cur.rowcount
    conn.execute("UPDATE customers SET merged_into = %s, updated_at = now() WHERE id = %s",
                 (survivor, merged))
    conn.execute("INSERT INTO customer_merges (survivor_id, merged_id, reason, moved) "
                 "VALUES (%s, %s, %s, %s)", (survivor, merged, reason, Jsonb(moved)))
    return moved
