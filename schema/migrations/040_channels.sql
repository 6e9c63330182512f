-- Channels as they behave in production: dispatcher claim tokens and in-doubt sends,
-- delivery status per outbox part, the Gmail watch, the durable WhatsApp inbox.

-- A claimed row carries the claim's token; every update checks it, so a worker whose lease
-- ran out (another replica claimed the row since) changes nothing.
ALTER TABLE reply_outbox ADD COLUMN claim_token uuid;
-- The last attempt may have reached the provider (timeout or 5xx after the request left):
-- the next attempt looks the part up before sending it again.
ALTER TABLE reply_outbox ADD COLUMN in_doubt boolean NOT NULL DEFAULT false;

-- Provider delivery status per outbox part (Twilio status callbacks).
CREATE TABLE outbox_deliveries (
    provider_message_id text PRIMARY KEY,
    outbox_id     bigint REFERENCES reply_outbox (id),
    part          integer,
    channel       text NOT NULL,
    status        text NOT NULL
                  CHECK (status IN ('accepted', 'queued', 'sending', 'sent', 'delivered', 'read',
                                    'failed', 'undelivered', 'scheduled', 'canceled')),
    error_code    text,
    error_message text,
    updated_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX outbox_deliveries_outbox_idx ON outbox_deliveries (outbox_id);

-- The Gmail watch per mailbox (users.watch), renewed before it expires, and the last push.
CREATE TABLE channel_watches (
    channel       text NOT NULL,
    account       text NOT NULL,
    expires_at    timestamptz,
    renewed_at    timestamptz,
    last_push_at  timestamptz,
    last_poll_at  timestamptz,
    mailbox_history_id bigint,  -- the mailbox's own historyId when last seen
    note          text,         -- the last anomaly (e.g. a push behind the stored cursor)
    note_at       timestamptz,
    PRIMARY KEY (channel, account)
);

-- Signed WhatsApp webhooks, accepted durably before Kafka sees them; the relay publishes
-- each row and marks it. The MessageSid is the key: Twilio's retries insert nothing.
CREATE TABLE whatsapp_inbox (
    message_sid  text PRIMARY KEY,
    form         jsonb NOT NULL,
    received_at  timestamptz NOT NULL DEFAULT now(),
    relayed_at   timestamptz,
    attempts     integer NOT NULL DEFAULT 0,
    last_error   text
);
CREATE INDEX whatsapp_inbox_pending_idx ON whatsapp_inbox (received_at) WHERE relayed_at IS NULL;
CREATE INDEX whatsapp_inbox_received_idx ON whatsapp_inbox (received_at DESC);

-- The web form's email, once proven (verification link or code): answers go there too.
ALTER TABLE tickets ADD COLUMN contact_email_verified boolean NOT NULL DEFAULT false;

-- A WhatsApp reply outside the 24-hour session window with no approved template goes to the
-- customer's email instead: the WhatsApp row is 'rerouted' (the email row is its own).
ALTER TABLE reply_outbox DROP CONSTRAINT reply_outbox_status_check;
ALTER TABLE reply_outbox ADD CONSTRAINT reply_outbox_status_check
    CHECK (status IN ('pending', 'sending', 'sent', 'parked', 'failed', 'rerouted'));
