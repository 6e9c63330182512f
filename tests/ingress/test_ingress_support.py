"""Web form: validation naming fields, ticket row and Kafka event together, status reads,
size and rate limits."""

from __future__ import annotations

import uuid

import httpx
import psycopg
import pytest

from ingress.app import create_app


def form(**overrides) -> dict:
    body = {"name": "Jane Customer", "email": f"Jane.{uuid.uuid4().hex[:6]}@Example.com",
            "subject": "Cannot log in", "message": "I reset my password but still cannot log in.",
            "category": "technical", "phone": "+1 (555) 010-0199"}
    body.update(overrides)
    return {k: v for k, v in body.items() if v is not None}


def test_submit_creates_the_ticket_and_one_event_then_answers_202(client, inbound, database_url):
    body = form()
    response = client.post("/support/submit", json=body)
    assert response.status_code == 202
    ticket_id = response.json()["ticket_id"]
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT channel, status, category, subject, contact_email, contact_phone,"
                           " contact_name, source_inbound_key FROM tickets WHERE id = %s",
                           (ticket_id,)).fetchone()
    assert row == ("web", "open", "technical", "Cannot log in", body["email"].replace("Example", "example"), "+15550100199",
                   "Jane Customer", f"web:{ticket_id}")
    [(key, event)] = inbound("web", expect=1)
    assert key == f"email:{body['email'].lower()}"
    assert event["ticket_id"] == event["channel_message_id"] == ticket_id
    # Typed into the form: not proved until confirmed (/support/verify), so they link nothing.
    assert event["sender"] == [{"kind": "email", "value": body["email"].lower(), "verified": False},
                               {"kind": "phone", "value": "+15550100199", "verified": False}]
    assert event["metadata"] == {"category": "technical", "name": "Jane Customer"}


@pytest.mark.parametrize("field,value", [
    ("name", "J"), ("email", "not-an-email"), ("subject", "Hi"), ("message", "too short"),
    ("category", "sales"), ("phone", "0555 123"), ("message", None),
])
def test_invalid_fields_are_named_in_a_422_and_nothing_is_written(client, inbound, field, value):
    response = client.post("/support/submit", json=form(**{field: value}))
    assert response.status_code == 422
    assert [e["loc"][-1] for e in response.json()["detail"]] == [field]
    assert inbound("web", idle_s=0.5) == []


def test_ticket_status_shows_status_and_messages(client, database_url):
    ticket_id = client.post("/support/submit", json=form()).json()["ticket_id"]
    with psycopg.connect(database_url) as conn:  # what the flow writes when it answers
        conn.execute(
            "INSERT INTO messages (channel, channel_message_id, direction, author, ticket_id, body,"
            " occurred_at) VALUES ('web', %s, 'outbound', 'agent', %s, 'Try clearing cookies.', now())",
            (f"reply-{ticket_id}", ticket_id))
        conn.execute("UPDATE tickets SET status = 'answered' WHERE id = %s", (ticket_id,))
    ticket = client.get(f"/support/ticket/{ticket_id}").json()
    assert ticket["status"] == "answered"
    assert [(m["author"], m["body"]) for m in ticket["messages"]] == [("agent", "Try clearing cookies.")]


def test_ticket_lists_its_contact_kinds_masked_and_whether_each_is_confirmed(client, database_url):
    body = form(email=f"jane.{uuid.uuid4().hex[:6]}@example.com")
    ticket_id = client.post("/support/submit", json=body).json()["ticket_id"]
    ticket = client.get(f"/support/ticket/{ticket_id}").json()
    assert ticket["contacts"] == [{"kind": "email", "masked": "j***@example.com", "verified": False},
                                  {"kind": "phone", "masked": "+15***99", "verified": False}]
    assert body["email"] not in str(ticket) and "+15550100199" not in str(ticket)
    with psycopg.connect(database_url) as conn:  # what sinks/verification.py records on a code
        conn.execute("INSERT INTO identifier_verifications (ticket_id, kind, value, code_salt, code_hash,"
                     " expires_at, confirmed_at) VALUES (%s, 'phone', '+15550100199', '\\x00', '\\x00',"
                     " now(), now())", (ticket_id,))
    assert [c["verified"] for c in client.get(f"/support/ticket/{ticket_id}").json()["contacts"]] == [
        False, True]
    with psycopg.connect(database_url) as conn:  # a confirmed email (code or link)
        conn.execute("UPDATE tickets SET contact_email_verified = true WHERE id = %s", (ticket_id,))
    assert [c["verified"] for c in client.get(f"/support/ticket/{ticket_id}").json()["contacts"]] == [
        True, True]

    no_phone = client.post("/support/submit", json=form(phone=None)).json()["ticket_id"]
    assert [c["kind"] for c in client.get(f"/support/ticket/{no_phone}").json()["contacts"]] == ["email"]


def test_unknown_or_malformed_ticket_ids(client):
    assert client.get("/support/ticket/T-0000000000000000000A").status_code == 404
    assert client.get("/support/ticket/robert'); DROP TABLE tickets;--").status_code in (404, 422)


def test_oversized_body_is_refused_with_413(client, inbound):
    response = client.post("/support/submit", json=form(message="x" * 300_000))
    assert response.status_code == 413
    chunked = client.post("/support/submit", content=(b"x" * 65536 for _ in range(8)),
                          headers={"Content-Type": "application/json"})
    assert chunked.status_code == 413
    assert inbound("web", idle_s=0.5) == []


def test_rate_limits_per_identity_and_per_ip_answer_429(ingress_settings, server_thread):
    limited = ingress_settings.model_copy(update={"RATE_LIMIT_PER_IDENTITY": "2/minute",
                                                  "RATE_LIMIT_PER_IP": "5/minute"})
    with server_thread(create_app(limited)) as url, httpx.Client(base_url=url, timeout=30) as c:
        same = form()
        codes = [c.post("/support/submit", json=same).status_code for _ in range(3)]
        assert codes == [202, 202, 429]
        more = [c.post("/support/submit", json=form()).status_code for _ in range(3)]
        assert more == [202, 202, 429]  # the fifth and sixth request from this address
        limited_response = c.post("/support/submit", json=form())
        assert limited_response.status_code == 429 and limited_response.headers["retry-after"]


def test_support_page_is_served_with_the_form(client):
    page = client.get("/")
    assert page.status_code == 200
    assert 'id="support-form"' in page.text and '<html lang="en">' in page.text
    assert client.get("/static/app.js").status_code == 200
