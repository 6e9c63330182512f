-- Console: an audit trail of what support leads did, beside the columns the actions set
-- (escalations.assigned_to/resolved_by, dead_letters.replayed_by).
CREATE TABLE console_audit (
    id      bigserial PRIMARY KEY,
    actor   text  NOT NULL,
    action  text  NOT NULL,  -- assign, resolve, human_reply, replay, kb_save, kb_delete, login
    target  text  NOT NULL,  -- e.g. escalation:12, dead_letter:3, kb:returns-policy
    detail  jsonb NOT NULL DEFAULT '{}',
    at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX console_audit_time_idx ON console_audit (at DESC);
CREATE INDEX console_audit_target_idx ON console_audit (target, at DESC);
