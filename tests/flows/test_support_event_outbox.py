"""The event outbox with the real stages, Postgres and Kafka: a batch's events commit with its
rows, a replay adds none, and the relay publishes them (again after a failed delivery)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import psycopg
import pytest

from flows.policy import load_policy, with_router
from flows.sentiment import Trend
from flows.support import identity_resolver
from flows.support_steps import Inbound, Work
from fte.kafka import ensure_topics
from fte.settings import Settings
from schema.events import (
    Channel,
    Escalation,
    Identifier,
    IdentifierKind,
    InboundMessage,
    SupportEvent,
)
from schema.topics import ESCALATIONS, SUPPORT_EVENTS
from sinks.event_relay import DeliveryFailed, EventRelay
from sinks.support_store import SupportStages

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def env(kb_database_url, kafka_bootstrap, routing_model):
    prefix = f"eo{uuid.uuid4().hex[:8]}."
    ensure_topics(kafka_bootstrap, prefix, [SUPPORT_EVENTS, ESCALATIONS])
    settings = Settings(DATABASE_URL=kb_database_url, KAFKA_BOOTSTRAP_SERVERS=kafka_bootstrap,
                        TOPIC_PREFIX=prefix, OPENAI_API_KEY="")
    from flows.agent import build_agent

    router = routing_model[0]  # the production policy: rules, anger, then the learned route
    stages = SupportStages(kb_database_url, build_agent(settings, router),
                           with_router(load_policy(settings.ESCALATION_POLICY_FILE), router),
                           concurrency=2)
    return settings, stages, identity_resolver(settings)


def batch(resolve, texts: list[str]) -> list[Work]:
    tag = uuid.uuid4().hex[:6]
    out = []
    for i, text in enumerate(texts):
        ident = Identifier(kind=IdentifierKind.EMAIL, value=f"o{i}.{tag}@x.com")
        msg = InboundMessage(channel=Channel.EMAIL, channel_message_id=f"{tag}-{i}", sender=[ident],
                             subject="Question", body=text, received_at=datetime.now(UTC))
        item = Inbound(msg, (ident,), "t.channel.email.inbound", 0, i)
        out.append(Work(item, resolve(item), 0.0, Trend()))
    return out


def pending(url: str) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT id, events FROM event_outbox WHERE published_at IS NULL ORDER BY id").fetchall()


def read_events(bootstrap: str, prefix: str, keys: set[str]) -> tuple[list[SupportEvent], list[Escalation]]:
    from confluent_kafka import Consumer

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": uuid.uuid4().hex,
                         "auto.offset.reset": "earliest"})
    consumer.subscribe([f"{prefix}support.events", f"{prefix}support.escalations"])
    events, escalations, idle = [], [], 0
    try:
        while idle < 3:
            got = consumer.consume(500, timeout=2)
            idle = 0 if got else idle + 1
            for m in got:
                if m.error():
                    continue
                if m.topic().endswith("support.escalations"):
                    e = Escalation.model_validate_json(m.value())
                    escalations += [e] if e.inbound_key in keys else []
                else:
                    e = SupportEvent.model_validate_json(m.value())
                    events += [e] if e.inbound_key in keys else []
    finally:
        consumer.close()
    return events, escalations


def test_events_commit_with_the_batch_and_a_replay_still_gets_them_published(env):
    settings, stages, resolve = env
    url = settings.database_url
    work = batch(resolve, ["How can I track my order?", "I want a refund for my broken blender"])
    keys = {w.inbound.msg.inbound_key for w in work}
    before = len(pending(url))
    assert stages(work) == []
    rows = pending(url)
    assert len(rows) == before + 1  # one outbox row for the whole batch
    kinds = sorted(e[2].split('"kind":"')[1].split('"')[0] if '"kind"' in e[2] else "escalation"
                   for e in rows[-1][1])
    assert kinds == sorted(["ticket_opened", "received", "replied", "ticket_opened", "received",
                            "escalated", "replied", "escalation"])
    # The process dies after the commit, before producing: the replay finds the rows handled
    # and writes nothing new, and the events wait in the outbox.
    assert stages(work) == []
    assert len(pending(url)) == before + 1
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT count(*) FROM reply_outbox WHERE inbound_key = ANY(%s)",
                            (list(keys),)).fetchone()[0] == 2
    relay = EventRelay(url, settings.kafka_bootstrap, prefix=settings.TOPIC_PREFIX)
    with psycopg.connect(url, autocommit=True) as conn:
        assert relay.relay_once(conn) >= 1
        assert relay.relay_once(conn) == 0  # marked: nothing left to publish
    assert pending(url) == []
    events, escalations = read_events(settings.kafka_bootstrap, settings.TOPIC_PREFIX, keys)
    assert sorted(e.kind.value for e in events) == sorted(
        ["ticket_opened", "received", "replied", "ticket_opened", "received", "escalated", "replied"])
    assert [e.reason.value for e in escalations] == ["refund"]


def test_failed_delivery_leaves_rows_pending_for_the_next_relay(env):
    from confluent_kafka import Producer

    settings, stages, resolve = env
    url = settings.database_url
    work = batch(resolve, ["How do I change my shipping address?"])
    assert stages(work) == []
    assert pending(url)
    broken = EventRelay(url, "127.0.0.1:1", producer_factory=lambda: Producer(
        {"bootstrap.servers": "127.0.0.1:1", "message.timeout.ms": 1000}))
    with psycopg.connect(url, autocommit=True) as conn, pytest.raises(DeliveryFailed):
        broken.relay_once(conn)
    assert pending(url), "undelivered events must stay in the outbox"
    relay = EventRelay(url, settings.kafka_bootstrap, prefix=settings.TOPIC_PREFIX)
    with psycopg.connect(url, autocommit=True) as conn:
        assert relay.relay_once(conn) >= 1
    assert pending(url) == []
    key = work[0].inbound.msg.inbound_key
    events, _ = read_events(settings.kafka_bootstrap, settings.TOPIC_PREFIX, {key})
    assert {"received", "replied", "ticket_opened"} <= {e.kind.value for e in events}
