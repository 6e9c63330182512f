"""Every Kafka topic, its key and its partition count, in one place.

Partition counts are multiples of 4 so 1, 2 or 4 Bytewax workers each own an equal share
(Bytewax stalls when workers hold uneven numbers of partitions).
"""

from __future__ import annotations

from dataclasses import dataclass

from schema.events import Channel


@dataclass(frozen=True)
class Topic:
    name: str
    partitions: int
    key: str  # what the message key is, for readers of this table
    retention_ms: int = 7 * 24 * 3600 * 1000


EMAIL_INBOUND = Topic("channel.email.inbound", 4, "normalized sender identity")
WHATSAPP_INBOUND = Topic("channel.whatsapp.inbound", 4, "normalized sender identity")
WEB_INBOUND = Topic("channel.web.inbound", 4, "normalized sender identity")
SUPPORT_EVENTS = Topic("support.events", 4, "customer id")
ESCALATIONS = Topic("support.escalations", 4, "customer id")
ALERTS = Topic("support.alerts", 1, "alert kind", retention_ms=30 * 24 * 3600 * 1000)
DEADLETTER = Topic("deadletter", 4, "source topic", retention_ms=30 * 24 * 3600 * 1000)

ALL_TOPICS: tuple[Topic, ...] = (
    EMAIL_INBOUND,
    WHATSAPP_INBOUND,
    WEB_INBOUND,
    SUPPORT_EVENTS,
    ESCALATIONS,
    ALERTS,
    DEADLETTER,
)

INBOUND_BY_CHANNEL: dict[Channel, Topic] = {
    Channel.EMAIL: EMAIL_INBOUND,
    Channel.WHATSAPP: WHATSAPP_INBOUND,
    Channel.WEB: WEB_INBOUND,
}


def topic_name(topic: Topic, prefix: str = "") -> str:
    """The broker-side name: `prefix` lets tests and parallel deployments keep apart."""
    return f"{prefix}{topic.name}"
