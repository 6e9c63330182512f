"""From a verified inbound message to exactly one Kafka event.

Channel retries (Twilio re-posting a MessageSid, Pub/Sub redelivering a push) must not
double an event, and a refused publish must leave nothing behind. Both hold because the
receipt row and the wait for Kafka's ack share one transaction: the row commits only after
the ack, and a concurrent duplicate waits on the row's primary key until then.
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

from fte.logs import get_logger
from ingress.deps import Services
from ingress.publisher import Delivered
from schema.events import Channel, InboundMessage
from schema.identity import identity_key
from schema.topics import INBOUND_BY_CHANNEL, topic_name

_DEAD_LETTER = """
INSERT INTO dead_letters (source_topic, msg_key, raw, reason) VALUES (%s, %s, %s, %s)
"""

log = get_logger(__name__)

PUBLISHED = Counter("ingress_inbound_published_total", "Inbound events acknowledged by Kafka",
                    ["channel"])
DUPLICATES = Counter("ingress_inbound_duplicates_total", "Inbound messages already published",
                     ["channel"])
PUBLISH_SECONDS = Histogram("ingress_publish_seconds", "Time from produce to Kafka ack",
                            ["channel"], buckets=(.002, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5))

_CLAIM = """
INSERT INTO inbound_receipts (channel, channel_message_id, topic, kafka_partition, kafka_offset)
VALUES (%s, %s, %s, -1, -1)
ON CONFLICT (channel, channel_message_id) DO NOTHING
RETURNING 1
"""
_RECORD = """
UPDATE inbound_receipts SET kafka_partition = %s, kafka_offset = %s
WHERE channel = %s AND channel_message_id = %s
"""


def kafka_key(event: InboundMessage) -> str:
    """The first sender identifier (already normalized): one customer's messages stay ordered."""
    return identity_key(event.sender[0])


async def produce(services: Services, event: InboundMessage) -> Delivered:
    topic = topic_name(INBOUND_BY_CHANNEL[event.channel], services.settings.TOPIC_PREFIX)
    with PUBLISH_SECONDS.labels(event.channel.value).time():
        delivered = await services.publisher.publish(topic, kafka_key(event), event.to_bytes())
    PUBLISHED.labels(event.channel.value).inc()
    return delivered


async def publish_once(services: Services, event: InboundMessage) -> bool:
    """Publish unless this channel message was published before; True if published now.

    Raises KafkaUnavailable (nothing recorded) when Kafka does not ack.
    """
    channel = event.channel.value
    topic = topic_name(INBOUND_BY_CHANNEL[event.channel], services.settings.TOPIC_PREFIX)
    async with services.db.connection() as conn, conn.transaction():
        claimed = await (await conn.execute(
            _CLAIM, (channel, event.channel_message_id, topic))).fetchone()
        if claimed is None:
            DUPLICATES.labels(channel).inc()
            log.info("inbound.duplicate", channel=channel,
                     channel_message_id=event.channel_message_id)
            return False
        delivered = await produce(services, event)
        await conn.execute(_RECORD, (delivered.partition, delivered.offset, channel,
                                     event.channel_message_id))
    log.info("inbound.published", channel=channel, channel_message_id=event.channel_message_id,
             partition=delivered.partition, offset=delivered.offset)
    return True

