"""Only verified identifiers link or merge customers (issue 9), against the real Postgres."""

from __future__ import annotations

import pytest

from testkit import email_identifier as email
from testkit import phone_identifier as phone

from sinks.identity import link_verified, resolve_customer


def resolve(conn, idents, channel, name=None):
    with conn.transaction():
        return resolve_customer(conn, idents, channel=channel, display_name=name)


def test_web_form_with_a_victims_phone_gets_a_customer_of_its_own(conn):
    victim, _ = resolve(conn, [phone("+15550109999")], "whatsapp", "Victoria")
    attacker, merged = resolve(conn, [email("mallory@evil.com", False), phone("+15550109999", False)],
                               "web", "Mallory")
    assert attacker != victim and not merged
    assert conn.execute("SELECT count(*) FROM customer_merges").fetchone()[0] == 0
    # Nothing of the attacker's claim is recorded as a link; the victim keeps their number.
    rows = conn.execute("SELECT customer_id, kind, value, verified FROM customer_identifiers "
                        "ORDER BY id").fetchall()
    assert rows == [(victim, "phone", "+15550109999", True)]
    # Later messages from the victim's (signed) number still reach the victim only.
    again, _ = resolve(conn, [phone("+15550109999")], "whatsapp")
    assert again == victim
    assert conn.execute("SELECT display_name FROM customers WHERE id=%s", (victim,)).fetchone()[0] == "Victoria"


def test_unverified_email_claimed_first_never_captures_the_real_owner(conn):
    squatter, _ = resolve(conn, [email("victim@bank.com", False)], "web", "Mallory")
    owner, _ = resolve(conn, [email("victim@bank.com")], "email", "Victoria")
    assert owner != squatter
    second_claim, _ = resolve(conn, [email("victim@bank.com", False)], "web", "Mallory")
    assert second_claim not in (owner, squatter)  # every unproved claim stands alone


def test_a_replayed_unverified_message_finds_the_same_customer(conn):
    idents = [email("w@x.com", False)]
    with conn.transaction():
        first, _ = resolve_customer(conn, idents, channel="web", origin="web:T-1")
    with conn.transaction():
        again, _ = resolve_customer(conn, idents, channel="web", origin="web:T-1")
        other, _ = resolve_customer(conn, idents, channel="web", origin="web:T-2")
    assert again == first and other != first


def test_verified_identifiers_seen_together_merge(conn):
    a, _ = resolve(conn, [email("v@x.com")], "email")
    b, _ = resolve(conn, [phone("+15550108888")], "whatsapp")
    survivor, merged = resolve(conn, [email("v@x.com"), phone("+15550108888")], "web")
    assert merged and survivor == min(a, b)


def test_link_verified_merges_the_ticket_customer_into_the_owner(conn):
    owner, _ = resolve(conn, [phone("+15550107777")], "whatsapp", "Victoria")
    ticket_customer, _ = resolve(conn, [email("v2@x.com", False), phone("+15550107777", False)], "web")
    conv = conn.execute("INSERT INTO conversations (customer_id, first_channel, last_channel) "
                        "VALUES (%s, 'web', 'web') RETURNING id", (ticket_customer,)).fetchone()[0]
    conn.execute("INSERT INTO messages (channel, channel_message_id, direction, author, customer_id, "
                 "conversation_id, body, occurred_at) VALUES ('web', 'T-1', 'inbound', 'customer', %s, "
                 "%s, 'hi', now())", (ticket_customer, conv))
    with pytest.raises(ValueError):
        link_verified(conn, ticket_customer, phone("+15550107777", False), verified_by="web-code")
    with conn.transaction():
        survivor, merged = link_verified(conn, ticket_customer, phone("+15550107777"),
                                         verified_by="web-code")
    assert merged and survivor == owner
    assert conn.execute("SELECT customer_id FROM messages WHERE channel_message_id='T-1'").fetchone()[0] == owner
    with conn.transaction():  # the email proved later links to the same (surviving) customer
        again, merged = link_verified(conn, ticket_customer, email("v2@x.com"), verified_by="web-link")
    assert again == owner and not merged
    assert conn.execute("SELECT customer_id, verified_by FROM customer_identifiers WHERE value='v2@x.com'"
                        ).fetchone() == (owner, "web-link")


def test_legacy_unproved_link_is_taken_over_by_the_proved_owner(conn):
    squatter = conn.execute("INSERT INTO customers (display_name) VALUES ('Mallory') RETURNING id").fetchone()[0]
    conn.execute("INSERT INTO customer_identifiers (customer_id, kind, value, first_channel) "
                 "VALUES (%s, 'phone', '+15550106666', 'web')", (squatter,))
    owner, merged = resolve(conn, [phone("+15550106666")], "whatsapp", "Victoria")
    assert owner != squatter and not merged
    assert conn.execute("SELECT customer_id, verified FROM customer_identifiers WHERE value='+15550106666'"
                        ).fetchone() == (owner, True)
