"""Batched identity resolution gives the same customers as one message at a time (the
linking rules of sinks/identity.py), against the real Postgres."""

from __future__ import annotations

import psycopg
import pytest

from testkit import email_identifier as email
from testkit import phone_identifier as phone

from sinks.identity import merge_customers, resolve_batch, resolve_customer


def test_a_batch_resolves_like_one_message_at_a_time(conn):
    with conn.transaction():
        known, _ = resolve_customer(conn, [email("known@x.com")], channel="email")
        older, _ = resolve_customer(conn, [phone("+15550100001")], channel="whatsapp")
        merge_customers(conn, survivor=older, merged=known, reason="test")
    items = [
        ([email("known@x.com")], "email", "Kim", "email:a1"),           # linked, merged since
        ([email("w@x.com", False)], "web", "Walk-in", "web:T-1"),        # nothing verified
        ([email("w@x.com", False)], "web", "Walk-in", "web:T-2"),        # another claim: alone
        ([phone("+15550100002")], "whatsapp", "Newcomer", "whatsapp:b1"),  # first sight
        ([email("pair@x.com"), phone("+15550100001")], "web", None, "web:T-3"),  # links to older
    ]
    out = resolve_batch(conn, items)
    assert out[0] == older and out[4] == older
    assert out[1] != out[2] and {out[1], out[2]}.isdisjoint({older, known})
    assert conn.execute("SELECT customer_id FROM customer_identifiers WHERE value = '+15550100002'"
                        ).fetchone()[0] == out[3]
    assert conn.execute("SELECT display_name FROM customers WHERE id = %s", (older,)).fetchone()[0] == "Kim"
    # a replay finds the same customers, creating none
    customers = conn.execute("SELECT count(*) FROM customers").fetchone()[0]
    assert resolve_batch(conn, items) == out
    assert conn.execute("SELECT count(*) FROM customers").fetchone()[0] == customers


def test_a_message_that_cannot_be_resolved_fails_alone(conn):
    items = [([email("fine@x.com", False)], "web", "Fine", "web:ok"),
             ([email("bad@x.com", False)], "web", "bad\x00name", "web:bad")]
    out = resolve_batch(conn, items)
    assert isinstance(out[0], int)
    assert isinstance(out[1], Exception) and "0x00" in str(out[1])


def test_a_lost_database_stops_the_batch(conn, migrated_db):
    other = psycopg.connect(migrated_db, autocommit=True)
    pid = other.execute("SELECT pg_backend_pid()").fetchone()[0]
    conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
    with pytest.raises(psycopg.OperationalError):
        resolve_batch(other, [([email("gone@x.com", False)], "web", None, "web:gone")])
