-- Events of the support flow (received, ticket_opened, replied, escalated, escalations, ...)
-- are written here in the same transaction as the rows they describe, one row per handled
-- batch; the event relay (`fte relay`) publishes them to Kafka and sets published_at.
CREATE TABLE event_outbox (
    id           bigserial PRIMARY KEY,
    batch_key    text        NOT NULL UNIQUE,  -- the batch's inbound keys: a re-persist adds nothing
    events       jsonb       NOT NULL,         -- [[topic, key, value-json], ...] in publish order
    created_at   timestamptz NOT NULL DEFAULT now(),
    published_at timestamptz
);
CREATE INDEX event_outbox_pending_idx ON event_outbox (id) WHERE published_at IS NULL;
