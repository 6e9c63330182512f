"""`fte notify` against the real Kafka and Postgres, a Slack webhook stand-in and the Gmail
sandbox (through the reply outbox and the dispatcher's Gmail sender)."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import psycopg
import pytest
from testkit import wait_for

from fte.kafka import ensure_topics, idempotent_producer, produce_sync
from fte.settings import Settings
from schema.events import Alert, Channel, Escalation, EscalationReason
from schema.topics import ALERTS, ESCALATIONS, topic_name
from sinks.dispatcher import Dispatcher
from sinks.senders import GmailSender

LEAD = "lead@example.com"


@pytest.fixture
def notify_env(migrated_db, topic_prefix, slack, kafka_bootstrap):
    ensure_topics(kafka_bootstrap, topic_prefix, [ESCALATIONS, ALERTS])
    return {"DATABASE_URL": migrated_db, "TOPIC_PREFIX": topic_prefix,
            "NOTIFY_SLACK_WEBHOOK_URL": slack.url, "NOTIFY_EMAIL_TO": LEAD}


def escalation(priority: str, escalation_id: int | None = None, **kw) -> Escalation:
    return Escalation(escalation_id=escalation_id or int(uuid.uuid4().int % 10**9), customer_id=7,
                      ticket_id="T-1", channel=Channel.WHATSAPP, reason=EscalationReason.REFUND,
                      detail="customer asks for a refund", inbound_key=f"k-{uuid.uuid4().hex}",
                      priority=priority, created_at=kw.pop("created_at", datetime.now(UTC)))


def publish(kafka_bootstrap: str, topic: str, event) -> None:
    produce_sync(idempotent_producer(kafka_bootstrap), topic, event.to_bytes(), key=b"k")


def outbox_notifications(db: str) -> list[tuple]:
    with psycopg.connect(db) as conn:
        return conn.execute("SELECT recipient, subject, status FROM reply_outbox "
                            "WHERE kind = 'notification' ORDER BY id").fetchall()


def test_urgent_escalation_and_sla_breach_notify_within_30s_once(
        notify_env, services, slack, kafka_bootstrap, topic_prefix, migrated_db, channel_api_server):
    notify = services(["notify"], notify_env)
    notify.wait_ready()

    urgent = escalation("urgent")
    started = time.monotonic()
    publish(kafka_bootstrap, topic_name(ESCALATIONS, topic_prefix), urgent)
    wait_for(lambda: any(f"escalation {urgent.escalation_id}" in p["text"] for p in slack.posts),
             30, "Slack post for the urgent escalation")
    assert time.monotonic() - started < 30
    wait_for(lambda: outbox_notifications(migrated_db), 30, "email queued in the outbox")
    [(recipient, subject, _)] = outbox_notifications(migrated_db)
    assert recipient == LEAD and "[URGENT]" in subject and str(urgent.escalation_id) in subject

    breach = Alert(kind="sla_breach", value=42.0, threshold=0.0, raised_at=datetime.now(UTC),
                   detail={"bucket": "2026-11-28T09:00:00+00:00", "subject": "T-9", "channel": "email",
                           "priority": "high"})
    started = time.monotonic()
    publish(kafka_bootstrap, topic_name(ALERTS, topic_prefix), breach)
    wait_for(lambda: any("sla_breach T-9" in p["text"] for p in slack.posts), 30, "Slack post for the breach")
    assert time.monotonic() - started < 30
    wait_for(lambda: len(outbox_notifications(migrated_db)) == 2, 30, "breach email queued")

    # Per priority: a normal escalation goes to Slack only, a low one to nobody.
    normal, low = escalation("normal"), escalation("low")
    publish(kafka_bootstrap, topic_name(ESCALATIONS, topic_prefix), low)
    publish(kafka_bootstrap, topic_name(ESCALATIONS, topic_prefix), normal)
    wait_for(lambda: any(f"escalation {normal.escalation_id}" in p["text"] for p in slack.posts), 30,
             "Slack post for the normal escalation")
    assert not any(f"escalation {low.escalation_id}" in p["text"] for p in slack.posts)
    assert len(outbox_notifications(migrated_db)) == 2

    # The exporter counts what it did while it works.
    assert notify.metric("fte_notifications_total", target="slack", outcome="sent") == 3
    assert notify.metric("fte_alerts_total", kind="sla_breach") == 1

    # Replayed: the same events again, and a new consumer (another group) reading the topics
    # from the start. Nothing is sent twice.
    publish(kafka_bootstrap, topic_name(ESCALATIONS, topic_prefix), urgent)
    publish(kafka_bootstrap, topic_name(ALERTS, topic_prefix), breach)
    second = services(["notify", "--group", "fte-notify-replay"], notify_env)
    second.wait_ready()
    marker = escalation("high")
    publish(kafka_bootstrap, topic_name(ESCALATIONS, topic_prefix), marker)
    # The marker is read after the replayed events by both consumers (one partition per key).
    wait_for(lambda: any(f"escalation {marker.escalation_id}" in p["text"] for p in slack.posts), 60,
             "marker escalation")
    wait_for(lambda: second.metric("fte_notifications_total", outcome="duplicate") >= 3, 60,
             "the replaying consumer saw the old events as duplicates")
    texts = [p["text"] for p in slack.posts]
    assert sum(f"escalation {urgent.escalation_id}" in t for t in texts) == 1
    assert sum("sla_breach T-9" in t for t in texts) == 1
    assert len(outbox_notifications(migrated_db)) == 3  # + the marker's email (high: slack+email)

    # The emails go out through the dispatcher's Gmail sender, once each.
    s = Settings(DATABASE_URL=migrated_db, GMAIL_DISCOVERY_URL=f"{channel_api_server}/discovery/gmail/v1/rest")
    dispatcher = Dispatcher(migrated_db, {"email": lambda: GmailSender(s)}, retry_base_s=0)
    with psycopg.connect(migrated_db, autocommit=True) as conn:
        from psycopg.rows import dict_row

        conn.row_factory = dict_row
        while dispatcher.run_once(conn, "email", GmailSender(s)):
            pass
    sent = [m for m in httpx.get(f"{channel_api_server}/_sandbox/gmail/sent").json()["data"] if m["to"] == LEAD]
    subjects = [m["subject"] for m in sent]
    assert sum(str(urgent.escalation_id) in x for x in subjects) == 1
    assert sum("sla_breach" in x for x in subjects) == 1
    assert [r[2] for r in outbox_notifications(migrated_db)] == ["sent"] * 3


def test_failed_slack_post_is_retried_and_stale_events_are_not_announced(
        notify_env, services, slack, kafka_bootstrap, topic_prefix, migrated_db):
    slack.fail_next = 1
    notify = services(["notify"], notify_env)
    notify.wait_ready()
    old = escalation("urgent", created_at=datetime.now(UTC) - timedelta(days=2))
    fresh = escalation("urgent")
    publish(kafka_bootstrap, topic_name(ESCALATIONS, topic_prefix), old)
    publish(kafka_bootstrap, topic_name(ESCALATIONS, topic_prefix), fresh)
    # The first post fails (503); the retry sweep (every 30 s) sends it.
    wait_for(lambda: any(f"escalation {fresh.escalation_id}" in p["text"] for p in slack.posts), 90,
             "the retried Slack post")
    with psycopg.connect(migrated_db) as conn:
        status, attempts = conn.execute("SELECT status, attempts FROM notifications WHERE dedupe_key = %s",
                                        (f"escalation:{fresh.escalation_id}:slack:webhook",)).fetchone()
    assert status == "sent" and attempts == 2
    assert not any(f"escalation {old.escalation_id}" in p["text"] for p in slack.posts)
    assert notify.metric("fte_notifications_total", outcome="stale") == 2  # slack + email
