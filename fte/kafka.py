"""Kafka clients shared by every process: topic creation and the idempotent producer."""

from __future__ import annotations

import time
from collections.abc import Iterable

from confluent_kafka import KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from schema.topics import ALL_TOPICS, Topic, topic_name


def admin(bootstrap: str) -> AdminClient:
    return AdminClient({"bootstrap.servers": bootstrap})


def ensure_topics(bootstrap: str, prefix: str = "", topics: Iterable[Topic] = ALL_TOPICS,
                  timeout: float = 30.0) -> list[str]:
    """Create missing topics; returns the names created now (idempotent)."""
    client = admin(bootstrap)
    existing = set(client.list_topics(timeout=timeout).topics)
    wanted = [
        NewTopic(topic_name(t, prefix), num_partitions=t.partitions, replication_factor=-1,
                 config={"retention.ms": str(t.retention_ms)})
        for t in topics
        if topic_name(t, prefix) not in existing
    ]
    if not wanted:
        return []
    created = []
    for name, future in client.create_topics(wanted, operation_timeout=timeout).items():
        try:
            future.result(timeout)
            created.append(name)
        except KafkaException as exc:
            if exc.args[0].name() != "TOPIC_ALREADY_EXISTS":
                raise
    _wait_until_visible(client, {t.topic: t.num_partitions for t in wanted}, timeout)
    return created


def _wait_until_visible(client: AdminClient, partitions: dict[str, int], timeout: float) -> None:
    """Creation is acked by the controller before every broker serves the topic's metadata;
    consumers that list partitions right away (Bytewax's KafkaSource) would fail."""
    deadline = time.monotonic() + timeout
    while True:
        topics = client.list_topics(timeout=timeout).topics
        missing = [
            name for name, count in partitions.items()
            if name not in topics or topics[name].error is not None
            or len(topics[name].partitions) < count
            or any(p.leader < 0 for p in topics[name].partitions.values())
        ]
        if not missing:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"topics not visible after {timeout}s: {missing}")
        time.sleep(0.1)


def idempotent_producer(bootstrap: str, **overrides) -> Producer:
    """acks=all, idempotence on: a retried send never duplicates or reorders a partition."""
    config = {
        "bootstrap.servers": bootstrap,
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 5,
        "compression.type": "lz4",
        "message.timeout.ms": 10_000,
        "socket.timeout.ms": 5_000,
        "reconnect.backoff.max.ms": 2_000,
    }
    config.update(overrides)
    return Producer(config)


class DeliveryFailed(RuntimeError):
    pass


def produce_sync(producer: Producer, topic: str, value: bytes, key: bytes | str | None = None,
                 timeout: float = 10.0) -> tuple[int, int]:
    """Produce one message and wait for the broker's ack; returns (partition, offset)."""
    result: dict = {}

    def on_delivery(err, msg):
        result["err"] = err
        result["msg"] = msg

    producer.produce(topic, value=value, key=key, on_delivery=on_delivery)
    remaining = producer.flush(timeout)
    if "err" not in result:
        raise DeliveryFailed(f"no delivery report within {timeout}s ({remaining} in flight)")
    if result["err"] is not None:
        raise DeliveryFailed(str(result["err"]))
    return result["msg"].partition(), result["msg"].offset()
