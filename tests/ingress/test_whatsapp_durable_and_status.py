"""WhatsApp as it behaves in production: a signed webhook accepted durably (Postgres inbox,
200) and relayed to Kafka by a relay that survives restarts; 503 only when Postgres is down;
Twilio's signed status callbacks stored per outbox part, a 63016 failure escalating to a
person instead of counting as a first response. Real Kafka, Postgres, ingress and the local
Twilio API server (which sends the callbacks), faults injected in it."""

from __future__ import annotations

import uuid

import httpx
import psycopg
import pytest
from psycopg.rows import dict_row
from pydantic import SecretStr
from testkit import free_port, wait_for
from twilio.request_validator import RequestValidator

from ingress.app import create_app
from schema.events import Channel, Reply, ReplyKind
from schema.migrate import migrate
from sinks.dispatcher import Dispatcher
from sinks.outbox import enqueue_replies
from sinks.senders import TwilioSender

from testkit import OPERATOR_KEYS

VIEWER = {"X-API-Key": OPERATOR_KEYS["viewer"]}  # /health/details is for operators

URL = "https://support.example.test/webhooks/whatsapp"


def signed(token: str, form: dict, url: str = URL) -> dict:
    return {"X-Twilio-Signature": RequestValidator(token).compute_signature(url, form)}


def twilio_form(sid: str) -> dict:
    return {"MessageSid": sid, "From": "whatsapp:+15550104242", "To": "whatsapp:+14155238886",
            "Body": "Is my parcel lost?", "NumMedia": "0", "ProfileName": "Jo"}


@pytest.fixture
def own_db(fresh_database) -> str:
    migrate(fresh_database)
    return fresh_database


def test_signed_webhook_is_stored_then_relayed_once_after_a_restart(
        ingress_settings, server_thread, twilio_token, inbound, own_db):
    sid = f"SM{uuid.uuid4().hex}"
    form = twilio_form(sid)
    quiet = ingress_settings.model_copy(update={"DATABASE_URL": own_db, "INGRESS_BACKGROUND": False})
    with server_thread(create_app(quiet)) as url:  # an ingress whose relay is not running
        for _ in range(2):  # Twilio's retry of the same MessageSid adds nothing
            response = httpx.post(f"{url}/webhooks/whatsapp", data=form, headers=signed(twilio_token, form))
            assert response.status_code == 200 and response.text.endswith("<Response></Response>")
    with psycopg.connect(own_db, row_factory=dict_row) as conn:
        rows = conn.execute("SELECT * FROM whatsapp_inbox").fetchall()
    assert [(r["message_sid"], r["relayed_at"]) for r in rows] == [(sid, None)]
    assert rows[0]["form"]["Body"] == "Is my parcel lost?"
    assert inbound("whatsapp", idle_s=1.0) == []

    relaying = ingress_settings.model_copy(update={"DATABASE_URL": own_db, "WHATSAPP_RELAY_POLL_S": 0.2})
    with server_thread(create_app(relaying)) as url:  # restarted: the relay picks the row up
        events = inbound("whatsapp", expect=1, idle_s=1.0)
        health = httpx.get(f"{url}/health/details", headers=VIEWER).json()["channels"]["whatsapp"]
    assert [e["channel_message_id"] for _, e in events] == [sid]
    assert events[0][1]["sender"][0]["verified"] is True
    with psycopg.connect(own_db, row_factory=dict_row) as conn:
        assert conn.execute("SELECT relayed_at FROM whatsapp_inbox").fetchone()["relayed_at"] is not None
    assert health["intake"] == "ok" and health["relay_pending"] == 0 and health["last_webhook_at"]
    assert health["last_message_at"]


def test_postgres_down_is_the_only_503(ingress_settings, server_thread, twilio_token):
    down = ingress_settings.model_copy(update={
        "DATABASE_URL": f"postgresql://postgres@127.0.0.1:{free_port()}/nothing", "INGRESS_BACKGROUND": False})
    form = twilio_form(f"SM{uuid.uuid4().hex}")
    with server_thread(create_app(down)) as url:
        response = httpx.post(f"{url}/webhooks/whatsapp", data=form, headers=signed(twilio_token, form),
                              timeout=30)
    assert response.status_code == 503 and response.headers["retry-after"]


@pytest.fixture
def status_setup(ingress_settings, server_thread, twilio_token, own_db):
    """An ingress on a known port (Twilio signs its callback URL) and a Twilio server with
    the same auth token, sending status callbacks there."""
    from sandbox.app import create_app as sandbox_app

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    settings = ingress_settings.model_copy(update={"DATABASE_URL": own_db, "PUBLIC_BASE_URL": base})
    with server_thread(sandbox_app(settings), lifespan="off") as twilio_url, \
            server_thread(create_app(settings), port=port):
        sender_settings = settings.model_copy(update={"TWILIO_API_BASE": twilio_url,
                                                      "TWILIO_AUTH_TOKEN": SecretStr(twilio_token)})
        with psycopg.connect(own_db, row_factory=dict_row, autocommit=True) as conn:
            conn.execute("INSERT INTO customers (id, display_name) VALUES (7, 'Jo')")
            conn.execute("INSERT INTO messages (channel, channel_message_id, direction, author, customer_id,"
                         " body, occurred_at) VALUES ('whatsapp', 'SMin', 'inbound', 'customer', 7, 'hi', now())")
            yield conn, sender_settings, twilio_url, base


def send_reply(conn, settings, ticket: str, parts: list[str]) -> dict:
    conn.execute("INSERT INTO tickets (id, customer_id, channel) VALUES (%s, 7, 'whatsapp')", (ticket,))
    key = f"whatsapp:{uuid.uuid4().hex}"
    with conn.transaction():
        enqueue_replies(conn, [Reply(inbound_key=key, kind=ReplyKind.AGENT, channel=Channel.WHATSAPP,
                                     customer_id=7, ticket_id=ticket, recipient="whatsapp:+15550104242",
                                     body="\n".join(parts), parts=parts)])
    d = Dispatcher(settings.database_url, {"whatsapp": lambda: TwilioSender(settings)},
                   whatsapp_status_callbacks=True, public_base_url=settings.PUBLIC_BASE_URL)
    d.run_once(conn, "whatsapp", TwilioSender(settings))
    return conn.execute("SELECT * FROM reply_outbox WHERE inbound_key = %s", (key,)).fetchone()


def deliveries(conn, outbox_id: int) -> list[dict]:
    return conn.execute("SELECT part, status, error_code FROM outbox_deliveries WHERE outbox_id = %s "
                        "ORDER BY part", (outbox_id,)).fetchall()


def test_status_callbacks_are_stored_per_part_and_delivery_counts_as_first_response(status_setup):
    conn, settings, _, _ = status_setup
    row = send_reply(conn, settings, "T-STATUSOK0001", ["Part one (1/2)", "Part two (2/2)"])
    assert row["status"] == "sent"
    assert conn.execute("SELECT first_response_at FROM tickets WHERE id = 'T-STATUSOK0001'"
                        ).fetchone()["first_response_at"] is None  # accepted is not delivered
    wait_for(lambda: [d["status"] for d in deliveries(conn, row["id"])] == ["read", "read"], 30,
             "read callbacks for both parts")
    assert conn.execute("SELECT first_response_at FROM tickets WHERE id = 'T-STATUSOK0001'"
                        ).fetchone()["first_response_at"] is not None


def test_63016_outside_the_window_escalates_with_the_reason(status_setup):
    conn, settings, twilio_url, _ = status_setup
    httpx.post(f"{twilio_url}/_sandbox/twilio/faults", json={"delivery_error": 63016,
                                                              "delivery_error_count": 1})
    row = send_reply(conn, settings, "T-STATUS63016", ["We found your parcel."])
    wait_for(lambda: deliveries(conn, row["id"]) == [{"part": 0, "status": "failed", "error_code": "63016"}],
             30, "the failed callback")
    esc = wait_for(lambda: conn.execute("SELECT * FROM escalations WHERE ticket_id = 'T-STATUS63016'"
                                        ).fetchone(), 10, "the escalation")
    assert esc["reason"] == "delivery_failed" and "24-hour" in esc["detail"] and esc["status"] == "open"
    ticket = conn.execute("SELECT status, first_response_at FROM tickets WHERE id = 'T-STATUS63016'").fetchone()
    assert ticket == {"status": "escalated", "first_response_at": None}


def test_forged_status_callback_is_refused(status_setup):
    conn, _, _, base = status_setup
    form = {"MessageSid": "SMforged", "MessageStatus": "delivered"}
    response = httpx.post(f"{base}/webhooks/whatsapp/status", data=form,
                          headers=signed("not-the-token", form, f"{base}/webhooks/whatsapp/status"))
    assert response.status_code == 403
    assert conn.execute("SELECT count(*) AS n FROM outbox_deliveries").fetchone()["n"] == 0
