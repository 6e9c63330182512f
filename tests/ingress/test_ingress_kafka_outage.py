"""Kafka down: the web form and the Gmail push answer 503 with Retry-After and record
nothing; a signed WhatsApp webhook is accepted into the Postgres inbox and relayed later;
after Kafka restarts they accept again.

Runs a private single-node Kafka on free ports (the stack's jars, its own data directory),
so stopping it never disturbs anyone else's broker.
"""

from __future__ import annotations

import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
import psycopg
import pytest
from testkit import free_port
from twilio.request_validator import RequestValidator

from fte.kafka import ensure_topics
from fte.stack.kafka import EmbeddedKafka
from ingress.app import create_app
from schema.topics import EMAIL_INBOUND, WEB_INBOUND, WHATSAPP_INBOUND

URL = "https://support.example.test/webhooks/whatsapp"


def retried(call, attempts: int = 20) -> int:
    """Status of `call`, retried while it answers 503 (as a channel or browser would)."""
    for _ in range(attempts):
        status = call().status_code
        if status != 503:
            return status
        time.sleep(1)
    return status




@pytest.fixture
def private_kafka(stack, tmp_path):
    shared_libs = stack.FTE_DATA_DIR / "kafka" / "libs"
    if not (shared_libs / ".pom-hash").exists():
        pytest.skip("the embedded stack's Kafka jars are not there (external Kafka)")
    home = tmp_path / "kafka"
    home.mkdir()
    (home / "libs").symlink_to(shared_libs)
    settings = stack.model_copy(update={"FTE_DATA_DIR": tmp_path, "FTE_KAFKA_PORT": free_port(),
                                            "FTE_KAFKA_CONTROLLER_PORT": free_port(),
                                            "FTE_KAFKA_HEAP": "256m", "KAFKA_BOOTSTRAP_SERVERS": None})
    kafka = EmbeddedKafka(settings)
    kafka.start()
    try:
        yield kafka, settings
    finally:
        kafka.stop()


def test_kafka_down_gives_503_and_nothing_recorded_then_accepts_after_restart(
        private_kafka, ingress_settings, database_url, twilio_token, push_signer, push_envelope,
        sandbox_url, mailbox, server_thread, topic_reader):
    kafka, kafka_settings = private_kafka
    prefix = ingress_settings.TOPIC_PREFIX
    ensure_topics(kafka_settings.kafka_bootstrap, prefix, [EMAIL_INBOUND, WHATSAPP_INBOUND, WEB_INBOUND])
    settings = ingress_settings.model_copy(update={
        "KAFKA_BOOTSTRAP_SERVERS": kafka_settings.kafka_bootstrap, "INGRESS_PUBLISH_TIMEOUT_S": 3.0})

    run = uuid.uuid4().hex[:8]

    def submit(c):
        return c.post("/support/submit", json={
            "name": "Jane", "email": f"outage-{run}-{uuid.uuid4().hex[:8]}@example.com",
            "subject": "Kafka is down?", "message": "Does my request get lost when Kafka is down?",
            "category": "general"})

    def whatsapp(c, sid):
        form = {"MessageSid": sid, "From": "whatsapp:+15550100777", "To": "whatsapp:+14155238886",
                "Body": "Hello, anyone there?", "NumMedia": "0"}
        sig = RequestValidator(twilio_token).compute_signature(URL, form)
        return c.post("/webhooks/whatsapp", data=form, headers={"X-Twilio-Signature": sig})

    def gmail(c):
        """One new mail, then its push (retried pushes name the same historyId)."""
        delivered = httpx.post(f"{sandbox_url}/_sandbox/gmail/deliver", json={
            "mailbox": mailbox, "from": "jane@example.com", "subject": "During the outage",
            "text": "Is this mail lost while Kafka is down?"}).json()
        return lambda: c.post("/webhooks/gmail", json=push_envelope(mailbox, delivered["historyId"]),
                              headers={"Authorization": f"Bearer {push_signer.token()}"})

    sid = f"SM{uuid.uuid4().hex}"
    with server_thread(create_app(settings)) as url, httpx.Client(base_url=url, timeout=60) as c:
        assert retried(lambda: submit(c)) == 202  # a broker just started may not ack within 3 s
        kafka.stop()
        down = [submit(c), gmail(c)()]
        assert [r.status_code for r in down] == [503, 503]
        # A signed WhatsApp webhook is accepted durably (Twilio would not retry a 503).
        assert whatsapp(c, sid).status_code == 200
        assert all(r.headers.get("retry-after") for r in down)
        assert c.get("/health").status_code == 503
        with ThreadPoolExecutor(20) as pool:  # a burst: refused, never a 500 or a hang
            burst = list(pool.map(lambda _: submit(c).status_code, range(20)))
        assert burst == [503] * 20
        with psycopg.connect(database_url) as conn:
            receipts = conn.execute("SELECT count(*) FROM inbound_receipts WHERE channel_message_id"
                                    " = %s", (sid,)).fetchone()[0]
            tickets = conn.execute("SELECT count(*) FROM tickets WHERE contact_email LIKE %s",
                                   (f"outage-{run}-%",)).fetchone()[0]
        assert receipts == 0  # the inbox holds it until the relay publishes it
        assert tickets == 1  # only the one accepted before the outage

        kafka.start()
        # The producer reconnects on its own: a client retrying after Retry-After gets in.
        assert [retried(lambda: submit(c)), retried(lambda: whatsapp(c, sid)),
                retried(gmail(c))] == [202, 200, 204]
        assert c.get("/health").status_code == 200

    read_topic = topic_reader

    from schema.topics import topic_name
    bootstrap = kafka_settings.kafka_bootstrap
    assert len(read_topic(bootstrap, topic_name(WEB_INBOUND, prefix), expect=2)) == 2
    assert len(read_topic(bootstrap, topic_name(WHATSAPP_INBOUND, prefix), expect=1)) == 1
    assert len(read_topic(bootstrap, topic_name(EMAIL_INBOUND, prefix), expect=2)) == 2
