-- Metrics flow: mergeable window contents, SLA responses, lag sampling.

-- Each window row keeps what it was computed from: one entry per counted event, keyed by
-- the event's identity ("received:<inbound_key>", "first:<inbound_key>", ...). Merging is a
-- key union, so a replayed or late batch updates the window and never counts twice; the
-- aggregate columns are recomputed from the union on every write.
ALTER TABLE metric_windows
    ADD COLUMN contributions jsonb NOT NULL DEFAULT '{}';

-- 'met' rows record when the first agent/human reply was sent; breaches keep it null.
ALTER TABLE sla_events
    ADD COLUMN responded_at timestamptz,
    ADD COLUMN recorded_at  timestamptz NOT NULL DEFAULT now();
CREATE INDEX sla_events_kind_time_idx ON sla_events (kind, occurred_at DESC);

CREATE INDEX alerts_kind_time_idx ON alerts (kind, raised_at DESC);
