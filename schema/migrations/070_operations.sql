-- Operations: notifications sent once, service uptime history, ticket auto-close/reopen.

-- One row per notification (event x target x recipient): claimed before it is sent, so a
-- replayed event or a second `fte notify` never sends it twice.
CREATE TABLE notifications (
    dedupe_key  text PRIMARY KEY,          -- e.g. escalation:42:slack, alert:sla_breach:T-1:email:lead@x
    source      text NOT NULL CHECK (source IN ('escalation', 'alert', 'report')),
    target      text NOT NULL CHECK (target IN ('email', 'slack')),
    recipient   text NOT NULL,
    priority    text NOT NULL,
    subject     text NOT NULL,
    body        text NOT NULL DEFAULT '',
    status      text NOT NULL DEFAULT 'sending' CHECK (status IN ('sending', 'sent', 'failed')),
    attempts    integer NOT NULL DEFAULT 0,
    last_error  text,
    event_at    timestamptz NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    sent_at     timestamptz
);
CREATE INDEX notifications_recent_idx ON notifications (created_at DESC);

-- Each service instance records every minute in which its work loop was live (its /livez
-- would have answered 200): uptime = minutes present / minutes in the period.
CREATE TABLE service_uptime (
    service   text NOT NULL,
    instance  text NOT NULL,
    minute    timestamptz NOT NULL,
    PRIMARY KEY (service, minute, instance)
);

-- Auto-close: an answered ticket left quiet closes (`fte tickets close-quiet`); the next
-- customer message on it reopens it (trigger below), and the reopen is counted.
ALTER TABLE tickets
    ADD COLUMN closed_reason text,
    ADD COLUMN closed_at     timestamptz,
    ADD COLUMN reopened_at   timestamptz,
    ADD COLUMN reopen_count  integer NOT NULL DEFAULT 0;
CREATE INDEX tickets_answered_idx ON tickets (updated_at) WHERE status = 'answered';

CREATE FUNCTION reopen_quiet_ticket() RETURNS trigger AS $$
BEGIN
    UPDATE tickets
       SET status = 'open', closed_reason = NULL, closed_at = NULL, resolved_at = NULL,
           reopened_at = NEW.occurred_at, reopen_count = reopen_count + 1, updated_at = now()
     WHERE id = NEW.ticket_id AND status = 'closed' AND closed_reason = 'quiet';
    RETURN NULL;
END $$ LANGUAGE plpgsql;

CREATE TRIGGER messages_reopen_quiet_ticket
    AFTER INSERT ON messages
    FOR EACH ROW
    WHEN (NEW.direction = 'inbound' AND NEW.ticket_id IS NOT NULL)
    EXECUTE FUNCTION reopen_quiet_ticket();
