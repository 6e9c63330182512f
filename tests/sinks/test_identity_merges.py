"""Identity resolution and customer merges against the real Postgres."""

from __future__ import annotations

import pytest

from testkit import email_identifier as email
from testkit import phone_identifier as phone

from sinks.identity import resolve_customer, survivors


def test_same_identifier_same_customer_and_linking(conn):
    with conn.transaction():
        a, merged = resolve_customer(conn, [email("a@x.com")], channel="email")
    assert not merged
    with conn.transaction():
        again, _ = resolve_customer(conn, [email("a@x.com"), phone("+15550100100")], channel="web")
    assert again == a
    with conn.transaction():
        by_phone, _ = resolve_customer(conn, [phone("+15550100100")], channel="whatsapp")
    assert by_phone == a
    kinds = conn.execute("SELECT kind, first_channel FROM customer_identifiers WHERE customer_id=%s "
                         "ORDER BY kind", (a,)).fetchall()
    assert kinds == [("email", "email"), ("phone", "web")]


def test_merge_moves_history_into_the_older_customer_in_one_transaction(conn):
    with conn.transaction():
        old, _ = resolve_customer(conn, [email("old@x.com")], channel="email")
        new, _ = resolve_customer(conn, [phone("+15550100200")], channel="whatsapp")
    for cid, ch in ((old, "email"), (new, "whatsapp")):
        conv = conn.execute("INSERT INTO conversations (customer_id, first_channel, last_channel) "
                            "VALUES (%s, %s, %s) RETURNING id", (cid, ch, ch)).fetchone()[0]
        conn.execute("INSERT INTO tickets (id, customer_id, conversation_id, channel) VALUES (%s,%s,%s,%s)",
                     (f"T-{cid}", cid, conv, ch))
        conn.execute("INSERT INTO messages (channel, channel_message_id, direction, author, customer_id, "
                     "conversation_id, body, occurred_at) VALUES (%s, %s, 'inbound', 'customer', %s, %s, "
                     "'hi', now())", (ch, f"m{cid}", cid, conv))
        conn.execute("INSERT INTO escalations (customer_id, inbound_key, channel, reason) "
                     "VALUES (%s, %s, %s, 'refund')", (cid, f"{ch}:m{cid}", ch))
    with conn.transaction():
        survivor, merged = resolve_customer(conn, [email("old@x.com"), phone("+15550100200")], channel="web")
    assert merged and survivor == old
    assert conn.execute("SELECT merged_into FROM customers WHERE id=%s", (new,)).fetchone()[0] == old
    for table in ("messages", "tickets", "conversations", "escalations", "customer_identifiers"):
        owners = {r[0] for r in conn.execute(f"SELECT customer_id FROM {table}").fetchall()}
        assert owners == {old}, table
    assert conn.execute("SELECT count(*) FROM conversations WHERE status='open'").fetchone()[0] == 1
    assert conn.execute("SELECT count(*) FROM escalations WHERE status='open'").fetchone()[0] == 1
    survivor_id, merged_id, moved = conn.execute(
        "SELECT survivor_id, merged_id, moved FROM customer_merges").fetchone()
    assert (survivor_id, merged_id) == (old, new)
    assert moved["messages"] == 1 and moved["tickets"] == 1
    assert survivors(conn, [new, old]) == {new: old, old: old}


def test_failed_merge_leaves_nothing_half_done(conn):
    with conn.transaction():
        resolve_customer(conn, [email("p@x.com")], channel="email")
        new, _ = resolve_customer(conn, [email("q@x.com")], channel="email")
    with pytest.raises(RuntimeError), conn.transaction():
        resolve_customer(conn, [email("p@x.com"), email("q@x.com")], channel="web")
        raise RuntimeError("crash before commit")
    assert conn.execute("SELECT count(*) FROM customer_merges").fetchone()[0] == 0
    assert conn.execute("SELECT merged_into FROM customers WHERE id=%s", (new,)).fetchone()[0] is None
