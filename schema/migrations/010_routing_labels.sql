-- Learned routing: articles that hand the customer to a person, and the leads' labels.

-- `escalate: true` (or a reason) in an article's front matter: a confident match escalates
-- with this reason instead of pasting the article.
ALTER TABLE knowledge_base ADD COLUMN IF NOT EXISTS escalate text;

-- A lead's verdict on how one message was handled; joins the training data on the next
-- `fte model train` (label: intent:<name> | escalate:<reason> | out_of_scope).
CREATE TABLE IF NOT EXISTS routing_labels (
    id          bigserial PRIMARY KEY,
    inbound_key text   NOT NULL UNIQUE,
    text        text   NOT NULL,
    verdict     text   NOT NULL CHECK (verdict IN ('wrong_answer', 'needless_escalation',
                                                   'missed_escalation', 'right')),
    label       text   NOT NULL,
    slug        text,
    handled_as  text,
    labelled_by text,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS routing_labels_created_idx ON routing_labels (created_at);
