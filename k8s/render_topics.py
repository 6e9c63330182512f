"""Render Strimzi `KafkaTopic` resources from `schema/topics.py`, the one topic table.

    .venv/bin/python k8s/render_topics.py > k8s/kafka-topics.yaml

tests/k8s checks that the committed file equals this output, so a topic added in
schema/topics.py without re-rendering fails the suite.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from schema.topics import ALL_TOPICS, Topic, topic_name  # noqa: E402

KAFKA_CLUSTER = "fte-kafka"  # metadata.name of the Strimzi `Kafka` in kafka.yaml
NAMESPACE = "fte"
REPLICAS = 3  # one copy per broker of the node pool
MIN_INSYNC_REPLICAS = 2  # with acks=all, a write survives the loss of one broker

HEADER = (
    "# Rendered by k8s/render_topics.py from schema/topics.py; do not edit by hand.\n"
    "# Re-render: .venv/bin/python k8s/render_topics.py > k8s/kafka-topics.yaml\n"
)


def resource_name(name: str) -> str:
    """A Kubernetes object name for a topic: dots are legal, but dashes read better."""
    return name.replace(".", "-").replace("_", "-").lower()


def kafka_topic(topic: Topic, prefix: str = "") -> dict:
    name = topic_name(topic, prefix)
    return {
        "apiVersion": "kafka.strimzi.io/v1",
        "kind": "KafkaTopic",
        "metadata": {
            "name": resource_name(name),
            "namespace": NAMESPACE,
            "labels": {"strimzi.io/cluster": KAFKA_CLUSTER, "app.kubernetes.io/part-of": "fte"},
            "annotations": {"fte/key": topic.key},
        },
        "spec": {
            "topicName": name,
            "partitions": topic.partitions,
            "replicas": REPLICAS,
            "config": {
                "retention.ms": topic.retention_ms,
                "min.insync.replicas": MIN_INSYNC_REPLICAS,
                "cleanup.policy": "delete",
            },
        },
    }


def render(prefix: str = "") -> str:
    docs = [kafka_topic(t, prefix) for t in ALL_TOPICS]
    return HEADER + yaml.safe_dump_all(docs, sort_keys=False, explicit_start=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prefix", default="", help="TOPIC_PREFIX of the deployment")
    args = parser.parse_args(argv)
    sys.stdout.write(render(args.prefix))
    return 0


if __name__ == "__main__":
    sys.exit(main())
