"""Read endpoints against a seeded database: lookup, conversation, channel metrics, health,
Prometheus metrics, OpenAPI."""

from __future__ import annotations

import uuid

import psycopg


def seed_customer(database_url: str) -> tuple[int, int, str, str]:
    email = f"lookup-{uuid.uuid4().hex[:8]}@example.com"
    phone = f"+1555{uuid.uuid4().int % 10_000_000:07d}"
    with psycopg.connect(database_url) as conn:
        old = conn.execute("INSERT INTO customers (display_name) VALUES ('Old Jane') RETURNING id").fetchone()[0]
        survivor = conn.execute("INSERT INTO customers (display_name) VALUES ('Jane') RETURNING id").fetchone()[0]
        conn.execute("UPDATE customers SET merged_into = %s WHERE id = %s", (survivor, old))
        conn.execute("INSERT INTO customer_identifiers (customer_id, kind, value, first_channel)"
                     " VALUES (%s, 'email', %s, 'email'), (%s, 'phone', %s, 'whatsapp')",
                     (survivor, email, survivor, phone))
        conv = conn.execute("INSERT INTO conversations (customer_id, first_channel, last_channel)"
                            " VALUES (%s, 'email', 'whatsapp') RETURNING id", (survivor,)).fetchone()[0]
        for i, (channel, direction, author, body) in enumerate([
                ("email", "inbound", "customer", "Where is my parcel?"),
                ("email", "outbound", "agent", "It ships today."),
                ("whatsapp", "inbound", "customer", "Thanks!")]):
            conn.execute(
                "INSERT INTO messages (channel, channel_message_id, direction, author, customer_id,"
                " conversation_id, body, occurred_at) VALUES (%s, %s, %s, %s, %s, %s, %s,"
                " now() + make_interval(secs => %s))",
                (channel, uuid.uuid4().hex, direction, author, survivor, conv, body, i))
    return survivor, conv, email, phone


def test_customer_lookup_by_email_or_phone(operator, database_url):
    client = operator
    customer_id, conv, email, phone = seed_customer(database_url)
    by_email = client.get("/customers/lookup", params={"email": email.upper()})
    assert by_email.status_code == 200
    body = by_email.json()
    assert body["id"] == customer_id and body["display_name"] == "Jane"
    assert {(i["kind"], i["value"]) for i in body["identifiers"]} == {("email", email), ("phone", phone)}
    assert [c["id"] for c in body["conversations"]] == [conv]
    assert client.get("/customers/lookup", params={"phone": phone}).json()["id"] == customer_id
    assert client.get("/customers/lookup", params={"email": "nobody@example.com"}).status_code == 404
    bad = client.get("/customers/lookup", params={"phone": "abc"})
    assert bad.status_code == 422 and "phone" in bad.json()["detail"]
    assert client.get("/customers/lookup").status_code == 422


def test_conversation_lists_messages_across_channels_in_order(operator, database_url):
    client = operator
    _, conv, _, _ = seed_customer(database_url)
    body = client.get(f"/conversations/{conv}").json()
    assert [(m["channel"], m["author"], m["body"]) for m in body["messages"]] == [
        ("email", "customer", "Where is my parcel?"), ("email", "agent", "It ships today."),
        ("whatsapp", "customer", "Thanks!")]
    assert body["count"] == 3
    assert client.get("/conversations/999999999").status_code == 404


def test_channel_metrics_sum_recent_windows(operator, database_url):
    client = operator
    with psycopg.connect(database_url) as conn:
        conn.execute("DELETE FROM metric_windows WHERE channel = 'web'")
        conn.execute(
            "INSERT INTO metric_windows (channel, window_start, window_end, received, replied, escalated,"
            " first_response_p95_ms, kb_lookups, kb_hits) VALUES"
            " ('web', date_trunc('minute', now()) - interval '2 minutes', date_trunc('minute', now()) - interval '1 minute', 10, 6, 2, 900, 6, 3),"
            " ('web', date_trunc('minute', now()) - interval '1 minute', date_trunc('minute', now()), 4, 3, 1, 1500, 3, 3),"
            " ('web', now() - interval '3 hours', now() - interval '179 minutes', 100, 0, 100, 9, 0, 0)")
    data = {c["channel"]: c for c in client.get("/metrics/channels", params={"minutes": 10}).json()["data"]}
    web = data["web"]
    assert (web["windows"], web["received"], web["replied"], web["escalated"]) == (2, 14, 9, 3)
    assert web["escalation_rate"] == 0.25
    assert web["first_response_p95_ms"] == 1500
    assert web["kb_hit_rate"] == 6 / 9


def test_health_details_report_kafka_postgres_and_channels(operator):
    response = operator.get("/health/details")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok" and body["kafka"]["ok"] and body["postgres"]["ok"]
    assert set(body["channels"]) == {"email", "whatsapp", "web"}
    assert body["channels"]["email"]["push_auth"] == "oidc"


def test_public_health_says_only_whether_it_is_up(client):
    response = client.get("/health")
    assert response.status_code == 200 and response.json() == {"status": "ok"}


def test_prometheus_metrics_and_openapi(client, operator):
    client.post("/support/submit", json={"name": "x"})
    text = operator.get("/metrics").text
    assert "ingress_responses_total" in text and 'route="/support/submit",status="422"' in text
    paths = operator.get("/openapi.json").json()["paths"]
    for path in ("/support/submit", "/webhooks/whatsapp", "/webhooks/gmail", "/customers/lookup",
                 "/conversations/{conversation_id}", "/metrics/channels", "/health"):
        assert path in paths
