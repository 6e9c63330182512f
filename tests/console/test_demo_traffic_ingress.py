"""`fte demo traffic` through the real ingress app (and the local Gmail API server for email):
every request accepted, and each channel's messages on its Kafka topic."""

from __future__ import annotations

import time

import pytest
from confluent_kafka import Consumer, TopicPartition
from testkit import ServerThread, free_port

from fte.settings import Settings
from sandbox import demo_traffic as demo
from schema.events import Channel, InboundMessage, parse_event
from schema.topics import INBOUND_BY_CHANNEL, topic_name

ingress_app = pytest.importorskip("ingress.app", reason="the ingress is not in the tree yet")




def _events(bootstrap: str, topic: str) -> list[InboundMessage]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"t-{topic}", "enable.auto.commit": False})
    parts = [TopicPartition(topic, p) for p in range(4)]
    ends = sum(consumer.get_watermark_offsets(tp, timeout=10)[1] for tp in parts)
    consumer.assign([TopicPartition(topic, p, 0) for p in range(4)])
    out: list[InboundMessage] = []
    deadline = time.monotonic() + 20
    while len(out) < ends and time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is not None and not msg.error():
            out.append(parse_event(InboundMessage, msg.value()))
    consumer.close()
    return out


def test_demo_traffic_reaches_kafka_through_the_ingress_on_every_channel(console_env):
    from sandbox.app import create_app as create_sandbox_app

    channels = demo.CHANNELS
    ingress_port, sandbox_port = free_port(), free_port()
    settings = Settings(
        ENVIRONMENT="test",
        DATABASE_URL=console_env["database_url"],
        KAFKA_BOOTSTRAP_SERVERS=console_env["kafka_bootstrap"],
        TOPIC_PREFIX=console_env["topic_prefix"],
        PUBLIC_BASE_URL=f"http://127.0.0.1:{ingress_port}",
        TWILIO_AUTH_TOKEN="demo-test-token",
        GMAIL_PUSH_VERIFICATION_TOKEN="demo-push-token",
        GMAIL_DISCOVERY_URL=f"http://127.0.0.1:{sandbox_port}/discovery/gmail/v1/rest",
    )
    with ServerThread(create_sandbox_app(), port=sandbox_port, lifespan="auto"), \
            ServerThread(ingress_app.create_app(settings), port=ingress_port, lifespan="auto"):
        traffic = demo.DemoTraffic(settings, ingress_url=f"http://127.0.0.1:{ingress_port}",
                                   sandbox_url=f"http://127.0.0.1:{sandbox_port}", channels=channels, seed=3,
                                   # One request at a time: concurrent Gmail pushes can race between
                                   # the local Gmail server's history list and its historyId.
                                   workers=1)
        results = traffic.run(rate=8, duration=3)
    sent = sum(results.values())
    assert sent >= 20, results
    accepted = {k: v for k, v in results.items() if k.split()[1] in ("200", "202", "204")}
    assert sum(accepted.values()) == sent, traffic.summary()

    by_channel: dict[str, list[InboundMessage]] = {}
    for channel in channels:
        topic = topic_name(INBOUND_BY_CHANNEL[Channel(channel)], console_env["topic_prefix"])
        by_channel[channel] = _events(console_env["kafka_bootstrap"], topic)
        expected = sum(v for k, v in results.items() if k.startswith(channel))
        assert len(by_channel[channel]) == expected, (channel, results)
    known_phones = {c.phone for c in demo.CUSTOMERS}
    known_emails = {c.email for c in demo.CUSTOMERS}
    for event in by_channel["whatsapp"]:
        assert event.sender[0].value in known_phones
    for event in by_channel["web"]:
        assert event.sender[0].value in known_emails
    for event in by_channel.get("email", []):  # read back from the mailbox by the ingress
        assert event.sender[0].value in known_emails and event.thread_id
    assert all(by_channel[c] for c in channels), {c: len(v) for c, v in by_channel.items()}
