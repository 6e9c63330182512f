-- Identity: only identifiers the channel proved link customers (issue 9).
-- A link row records whether it was proved; lookups use proved rows only. Rows from before
-- this migration count as proved when they came in as a channel's own sender (a WhatsApp
-- number, an email From); identifiers first typed into the web form do not.
ALTER TABLE customer_identifiers ADD COLUMN verified boolean NOT NULL DEFAULT false;
ALTER TABLE customer_identifiers ADD COLUMN verified_by text;  -- whatsapp, email, web-code, ...
UPDATE customer_identifiers SET verified = true, verified_by = first_channel
    WHERE first_channel IN ('email', 'whatsapp');
-- A message with nothing verified gets a customer of its own, keyed by the message, so a
-- replay after recovery finds the same one instead of creating another.
ALTER TABLE customers ADD COLUMN origin_inbound_key text UNIQUE;

-- One-time codes and links proving a web-form email or phone, tied to the ticket.
-- Only hashes are kept: the code with a per-row salt, the link token as a SHA-256.
CREATE TABLE identifier_verifications (
    id          bigserial PRIMARY KEY,
    ticket_id   text   NOT NULL REFERENCES tickets (id),
    kind        text   NOT NULL CHECK (kind IN ('email', 'phone')),
    value       text   NOT NULL,  -- normalized, as on the ticket
    code_salt   bytea  NOT NULL,
    code_hash   bytea  NOT NULL,
    token_hash  bytea  UNIQUE,    -- email only: the one-time link
    attempts    integer NOT NULL DEFAULT 0,
    expires_at  timestamptz NOT NULL,
    confirmed_at timestamptz,
    linked_customer_id bigint REFERENCES customers (id),
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX identifier_verifications_ticket_idx
    ON identifier_verifications (ticket_id, kind, created_at DESC);

-- Console: failed logins per user name, shared by every console replica and session.
CREATE TABLE console_login_failures (
    id        bigserial PRIMARY KEY,
    username  text NOT NULL,
    failed_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX console_login_failures_user_idx ON console_login_failures (username, failed_at DESC);
