-- Support flow: progress per input partition (lag = high watermark - next_offset), and
-- what the flow did with each inbound message, so a replay after recovery does nothing twice.
CREATE TABLE flow_progress (
    flow        text    NOT NULL,
    topic       text    NOT NULL,
    partition   integer NOT NULL,
    next_offset bigint  NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (flow, topic, partition)
);

-- Set in the same transaction as the reply/escalation rows: answered, clarified,
-- escalated, attached (human takeover).
ALTER TABLE messages
    ADD COLUMN handled_as text,
    ADD COLUMN handled_at timestamptz;

-- Dispatcher: the RFC 5322 Message-ID / Twilio body used to find an in-doubt send.
ALTER TABLE reply_outbox
    ADD COLUMN claimed_at timestamptz;
