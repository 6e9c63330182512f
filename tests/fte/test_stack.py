"""The embedded stack: idempotent `up`, status, and data kept across restarts."""

import subprocess
import sys
import time
import uuid

import psycopg
from confluent_kafka import Consumer, TopicPartition

from fte import stack as fte_stack
from fte.kafka import ensure_topics, idempotent_producer
from fte.stack.kafka import EmbeddedKafka
from fte.stack.postgres import EmbeddedPostgres
from schema.topics import DEADLETTER, topic_name


def _fte(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fte.cli", *args], capture_output=True,
                          text=True, timeout=300)


def test_status_shows_both_services_up_and_second_up_changes_nothing(stack):
    before = {s.name: s.detail for s in fte_stack.status(stack)}
    result = _fte("stack", "up")
    assert result.returncode == 0, result.stderr
    status = _fte("stack", "status")
    assert status.returncode == 0
    assert "kafka     up" in status.stdout and "postgres  up" in status.stdout
    assert {s.name: s.detail for s in fte_stack.status(stack)} == before  # same pids


def test_kafka_restart_keeps_produced_messages(stack, topic_prefix):
    ensure_topics(stack.kafka_bootstrap, topic_prefix, [DEADLETTER])
    topic = topic_name(DEADLETTER, topic_prefix)
    producer = idempotent_producer(stack.kafka_bootstrap)
    payloads = {f"m{i}-{uuid.uuid4().hex}".encode() for i in range(20)}
    for p in payloads:
        producer.produce(topic, key=b"k", value=p)
    assert producer.flush(15) == 0

    kafka = EmbeddedKafka(stack)
    kafka.stop()
    assert not fte_stack.status(stack)[0].up
    kafka.start()

    consumer = Consumer({"bootstrap.servers": stack.kafka_bootstrap, "group.id": "restart-test"})
    consumer.assign([TopicPartition(topic, p, 0) for p in range(DEADLETTER.partitions)])
    got = set()
    deadline = time.monotonic() + 30
    while got != payloads and time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is not None and msg.error() is None:
            got.add(msg.value())
    consumer.close()
    assert got == payloads


def test_postgres_restart_keeps_rows(stack):
    marker = uuid.uuid4().hex
    with psycopg.connect(stack.database_url) as conn:
        conn.execute(
            "INSERT INTO channel_cursors (channel, account, cursor) VALUES ('email', %s, '42')",
            (marker,),
        )
    pg = EmbeddedPostgres(stack)
    pg.stop()
    assert not fte_stack.status(stack)[1].up
    pg.start()
    with psycopg.connect(stack.database_url) as conn:
        row = conn.execute("SELECT cursor FROM channel_cursors WHERE account = %s", (marker,)).fetchone()
    assert row == ("42",)
