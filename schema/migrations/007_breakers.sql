-- Circuit-breaker state of each dispatcher process per channel, reported on change and
-- every few seconds, so the console shows what the senders are doing.
CREATE TABLE dispatcher_breakers (
    dispatcher           text NOT NULL,  -- host:pid
    channel              text NOT NULL,
    state                text NOT NULL CHECK (state IN ('closed', 'open', 'half-open')),
    consecutive_failures integer NOT NULL DEFAULT 0,
    opened_at            timestamptz,
    updated_at           timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (dispatcher, channel)
);
CREATE INDEX dispatcher_breakers_updated_idx ON dispatcher_breakers (updated_at DESC);
