-- Channel messages the ingress has published, so a webhook retried by Twilio or a Gmail
-- message seen in two Pub/Sub pushes gives one Kafka event. The row is inserted in the
-- same transaction that waits for Kafka's ack: a concurrent duplicate blocks on the
-- primary key until that transaction commits (then it is a duplicate) or rolls back
-- (Kafka refused, so the retry may publish).
CREATE TABLE inbound_receipts (
    channel            text NOT NULL CHECK (channel IN ('email', 'whatsapp', 'web')),
    channel_message_id text NOT NULL,
    topic              text NOT NULL,
    kafka_partition    integer NOT NULL,
    kafka_offset       bigint NOT NULL,
    received_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (channel, channel_message_id)
);
CREATE INDEX inbound_receipts_time_idx ON inbound_receipts (received_at);
