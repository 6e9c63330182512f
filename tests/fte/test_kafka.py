import uuid

from confluent_kafka import Consumer, TopicPartition

from fte.kafka import ensure_topics, idempotent_producer, produce_sync
from schema.topics import ALL_TOPICS, EMAIL_INBOUND, topic_name


def _consume_all(bootstrap: str, topic: str, expected: int, partitions: int, timeout: float = 20):
    consumer = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": f"test-{uuid.uuid4().hex}",
        "enable.auto.commit": False,
    })
    consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    got = []
    import time

    deadline = time.monotonic() + timeout
    while len(got) < expected and time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is None:
            continue
        assert msg.error() is None, msg.error()
        got.append((msg.key().decode(), msg.value().decode(), msg.partition()))
    consumer.close()
    return got


def test_topics_are_created_once_with_their_partition_counts(kafka_bootstrap, topic_prefix):
    created = ensure_topics(kafka_bootstrap, topic_prefix)
    again = ensure_topics(kafka_bootstrap, topic_prefix)
    assert sorted(created) == sorted(topic_name(t, topic_prefix) for t in ALL_TOPICS)
    assert again == []
    from fte.kafka import admin

    md = admin(kafka_bootstrap).list_topics(timeout=10)
    for t in ALL_TOPICS:
        assert len(md.topics[topic_name(t, topic_prefix)].partitions) == t.partitions
        assert t.partitions % 4 == 0 or t.partitions == 1


def test_idempotent_producer_round_trip_keeps_per_key_order(kafka_bootstrap, topic_prefix):
    ensure_topics(kafka_bootstrap, topic_prefix, [EMAIL_INBOUND])
    topic = topic_name(EMAIL_INBOUND, topic_prefix)
    producer = idempotent_producer(kafka_bootstrap)
    sent = []
    for i in range(30):
        key = f"email:customer{i % 3}@example.com"
        producer.produce(topic, key=key, value=f"{i}".encode())
        sent.append((key, str(i)))
    assert producer.flush(15) == 0

    got = _consume_all(kafka_bootstrap, topic, 30, EMAIL_INBOUND.partitions)
    assert sorted((k, v) for k, v, _ in got) == sorted(sent)
    for key in {k for k, _ in sent}:
        in_order = [int(v) for k, v, _ in got if k == key]
        assert in_order == sorted(in_order)
        assert len({p for k, _, p in got if k == key}) == 1  # one key, one partition


def test_produce_sync_returns_the_acked_offset(kafka_bootstrap, topic_prefix):
    ensure_topics(kafka_bootstrap, topic_prefix, [EMAIL_INBOUND])
    producer = idempotent_producer(kafka_bootstrap)
    topic = topic_name(EMAIL_INBOUND, topic_prefix)
    p1, o1 = produce_sync(producer, topic, b"a", key="k")
    p2, o2 = produce_sync(producer, topic, b"b", key="k")
    assert p1 == p2 and o2 == o1 + 1
