"""The public ticket: only that ticket's own web messages, only web-form tickets, and the
customer's reply on it (the ticket id authorises; same durable path as the form)."""

from __future__ import annotations

import uuid

import psycopg

from ingress.routes.support import new_ticket_id


def form(**overrides) -> dict:
    body = {"name": "Jane Customer", "email": f"jane.{uuid.uuid4().hex[:6]}@example.com",
            "subject": "Cannot log in", "message": "I reset my password but still cannot log in.",
            "category": "technical"}
    return {**body, **overrides}


def _message(conn, ticket_id, channel, direction, author, body, customer_id=None, conversation_id=None):
    conn.execute(
        "INSERT INTO messages (channel, channel_message_id, direction, author, ticket_id, body,"
        " customer_id, conversation_id, occurred_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, now())",
        (channel, uuid.uuid4().hex, direction, author, ticket_id, body, customer_id, conversation_id))


def test_ticket_ids_are_128_random_bits():
    ids = {new_ticket_id() for _ in range(1000)}
    assert len(ids) == 1000
    assert all(len(i) == 2 + 32 and int(i[2:], 16) >= 0 for i in ids)


def test_ticket_shows_only_its_own_web_messages(client, database_url):
    ticket_id = client.post("/support/submit", json=form()).json()["ticket_id"]
    with psycopg.connect(database_url) as conn:
        victim = conn.execute("INSERT INTO customers (display_name) VALUES ('Victoria') RETURNING id").fetchone()[0]
        conv = conn.execute("INSERT INTO conversations (customer_id, first_channel, last_channel)"
                            " VALUES (%s, 'whatsapp', 'web') RETURNING id", (victim,)).fetchone()[0]
        _message(conn, ticket_id, "web", "outbound", "agent", "Try clearing cookies.", victim, conv)
        # A linked customer's WhatsApp message filed on the same ticket, and another
        # conversation of the same customer: neither is the ticket page's to show.
        _message(conn, ticket_id, "whatsapp", "inbound", "customer",
                 "my wedding dress from order 7781 arrived torn, I live at 12 Elm Street", victim, conv)
        _message(conn, None, "email", "inbound", "customer", "Victoria's other order", victim, conv)
    ticket = client.get(f"/support/ticket/{ticket_id}").json()
    assert [(m["channel"], m["body"]) for m in ticket["messages"]] == [("web", "Try clearing cookies.")]
    assert "Victoria" not in str(ticket) and "Elm Street" not in str(ticket)
    assert set(ticket) == {"ticket_id", "status", "subject", "category", "created_at", "updated_at",
                           "first_response_at", "messages", "contacts"}


def test_tickets_of_other_channels_are_not_public(client, database_url):
    ticket_id = f"T-{uuid.uuid4()}"  # the form of ids derived from an email's first message
    with psycopg.connect(database_url) as conn:
        conn.execute("INSERT INTO tickets (id, channel, subject, status) VALUES (%s, 'email', 'x', 'open')",
                     (ticket_id,))
    assert client.get(f"/support/ticket/{ticket_id}").status_code == 404
    assert client.post(f"/support/ticket/{ticket_id}/reply", json={"message": "hi"}).status_code == 404


def test_reply_goes_to_kafka_once_as_the_tickets_own_sender(client, inbound, database_url):
    submitted = form(phone="+14155550123")
    ticket_id = client.post("/support/submit", json=submitted).json()["ticket_id"]
    reply = {"message": "Still broken after clearing cookies.", "reply_id": uuid.uuid4().hex}
    first = client.post(f"/support/ticket/{ticket_id}/reply", json=reply)
    again = client.post(f"/support/ticket/{ticket_id}/reply", json=reply)  # double click
    assert first.status_code == again.status_code == 202
    assert first.json() == {"ticket_id": ticket_id, "reply_id": reply["reply_id"], "status": "accepted"}
    events = [e for _, e in inbound("web", expect=2)]
    assert len(events) == 2  # the form submission and one reply
    event = next(e for e in events if e["metadata"].get("ticket_reply"))
    assert event["ticket_id"] == event["thread_id"] == ticket_id
    assert event["channel_message_id"] == f"{ticket_id}.{reply['reply_id']}"
    assert event["body"] == reply["message"]
    assert [(s["kind"], s["value"], s["verified"]) for s in event["sender"]] == [
        ("email", submitted["email"], False), ("phone", "+14155550123", False)]
    with psycopg.connect(database_url) as conn:  # durably recorded, like every inbound message
        receipts = conn.execute("SELECT count(*) FROM inbound_receipts WHERE channel = 'web'"
                                " AND channel_message_id = %s", (event["channel_message_id"],)).fetchone()[0]
    assert receipts == 1


def test_reply_cannot_name_another_sender_and_is_validated(client, database_url):
    ticket_id = client.post("/support/submit", json=form()).json()["ticket_id"]
    extra = client.post(f"/support/ticket/{ticket_id}/reply",
                        json={"message": "hello", "email": "victim@bank.com"})
    assert extra.status_code == 422 and extra.json()["detail"][0]["loc"][-1] == "email"
    empty = client.post(f"/support/ticket/{ticket_id}/reply", json={"message": "   "})
    assert empty.status_code == 422 and empty.json()["detail"][0]["loc"][-1] == "message"
    long = client.post(f"/support/ticket/{ticket_id}/reply", json={"message": "x" * 20_001})
    assert long.status_code == 422 and long.json()["detail"][0]["loc"][-1] == "message"
    with psycopg.connect(database_url) as conn:
        conn.execute("UPDATE tickets SET status = 'closed' WHERE id = %s", (ticket_id,))
    assert client.post(f"/support/ticket/{ticket_id}/reply", json={"message": "hi"}).status_code == 409
