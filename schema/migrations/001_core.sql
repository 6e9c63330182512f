-- Customers and their identities across channels.
CREATE EXTENSION IF NOT EXISTS vector;

CREATE TABLE customers (
    id           bigserial PRIMARY KEY,
    display_name text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    -- Set when this customer was merged into another; the row stays for history.
    merged_into  bigint REFERENCES customers (id)
);
CREATE INDEX customers_display_name_idx ON customers (lower(display_name));

CREATE TABLE customer_identifiers (
    id          bigserial PRIMARY KEY,
    customer_id bigint NOT NULL REFERENCES customers (id),
    kind        text   NOT NULL CHECK (kind IN ('email', 'phone')),
    value       text   NOT NULL,  -- normalized: lower-cased email, E.164 phone
    first_channel text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (kind, value)
);
CREATE INDEX customer_identifiers_customer_idx ON customer_identifiers (customer_id);
CREATE INDEX customer_identifiers_value_prefix_idx ON customer_identifiers (value text_pattern_ops);

CREATE TABLE customer_merges (
    id          bigserial PRIMARY KEY,
    survivor_id bigint NOT NULL REFERENCES customers (id),
    merged_id   bigint NOT NULL REFERENCES customers (id),
    reason      text   NOT NULL,
    moved       jsonb  NOT NULL DEFAULT '{}',  -- counts of rows moved per table
    merged_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX customer_merges_survivor_idx ON customer_merges (survivor_id);
CREATE INDEX customer_merges_merged_idx ON customer_merges (merged_id);

-- One open conversation per customer across channels.
CREATE TABLE conversations (
    id              bigserial PRIMARY KEY,
    customer_id     bigint NOT NULL REFERENCES customers (id),
    status          text   NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'closed')),
    first_channel   text   NOT NULL,
    last_channel    text   NOT NULL,
    opened_at       timestamptz NOT NULL DEFAULT now(),
    last_message_at timestamptz NOT NULL DEFAULT now(),
    closed_at       timestamptz
);
CREATE UNIQUE INDEX conversations_one_open_per_customer
    ON conversations (customer_id) WHERE status = 'open';
CREATE INDEX conversations_customer_recent_idx ON conversations (customer_id, last_message_at DESC);

CREATE TABLE channel_switches (
    id              bigserial PRIMARY KEY,
    conversation_id bigint NOT NULL REFERENCES conversations (id),
    from_channel    text   NOT NULL,
    to_channel      text   NOT NULL,
    inbound_key     text   NOT NULL UNIQUE,
    switched_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX channel_switches_conversation_idx ON channel_switches (conversation_id);

CREATE TABLE tickets (
    id                text PRIMARY KEY,  -- e.g. T-<uuid>; web tickets get theirs at submit
    customer_id       bigint REFERENCES customers (id),  -- null until identity resolves
    conversation_id   bigint REFERENCES conversations (id),
    channel           text   NOT NULL,
    subject           text,
    category          text   NOT NULL DEFAULT 'general',
    priority          text   NOT NULL DEFAULT 'normal'
                      CHECK (priority IN ('low', 'normal', 'high', 'urgent')),
    status            text   NOT NULL DEFAULT 'open'
                      CHECK (status IN ('open', 'answered', 'escalated', 'resolved', 'closed')),
    source_inbound_key text UNIQUE,
    contact_email     text,  -- as submitted on the web form
    contact_phone     text,
    contact_name      text,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    first_response_at timestamptz,
    resolved_at       timestamptz
);
CREATE INDEX tickets_customer_idx ON tickets (customer_id, created_at DESC);
CREATE INDEX tickets_conversation_idx ON tickets (conversation_id);
CREATE INDEX tickets_open_idx ON tickets (status, created_at) WHERE status IN ('open', 'escalated');

CREATE TABLE escalations (
    id              bigserial PRIMARY KEY,
    customer_id     bigint NOT NULL REFERENCES customers (id),
    conversation_id bigint REFERENCES conversations (id),
    ticket_id       text REFERENCES tickets (id),
    inbound_key     text   NOT NULL UNIQUE,  -- the message that triggered it
    channel         text   NOT NULL,
    reason          text   NOT NULL,
    detail          text   NOT NULL DEFAULT '',
    priority        text   NOT NULL DEFAULT 'normal',
    status          text   NOT NULL DEFAULT 'open'
                    CHECK (status IN ('open', 'assigned', 'resolved')),
    assigned_to     text,
    holding_ack_sent boolean NOT NULL DEFAULT false,
    created_at      timestamptz NOT NULL DEFAULT now(),
    assigned_at     timestamptz,
    resolved_at     timestamptz,
    resolved_by     text,
    resolution_note text
);
-- Human takeover: at most one escalation a customer is being worked on.
CREATE UNIQUE INDEX escalations_one_active_per_customer
    ON escalations (customer_id) WHERE status IN ('open', 'assigned');
CREATE INDEX escalations_queue_idx ON escalations (status, created_at);
CREATE INDEX escalations_reason_idx ON escalations (reason, created_at);

-- Every message in and out, idempotent on (channel, channel_message_id).
CREATE TABLE messages (
    id                 bigserial PRIMARY KEY,
    channel            text   NOT NULL CHECK (channel IN ('email', 'whatsapp', 'web')),
    channel_message_id text   NOT NULL,
    direction          text   NOT NULL CHECK (direction IN ('inbound', 'outbound')),
    author             text   NOT NULL CHECK (author IN ('customer', 'agent', 'human', 'system')),
    customer_id        bigint REFERENCES customers (id),
    conversation_id    bigint REFERENCES conversations (id),
    ticket_id          text REFERENCES tickets (id),
    escalation_id      bigint REFERENCES escalations (id),
    in_reply_to        text,  -- inbound_key this message answers
    subject            text,
    body               text   NOT NULL,
    sentiment          real,
    metadata           jsonb  NOT NULL DEFAULT '{}',
    occurred_at        timestamptz NOT NULL,
    created_at         timestamptz NOT NULL DEFAULT now(),
    UNIQUE (channel, channel_message_id)
);
CREATE INDEX messages_customer_recent_idx ON messages (customer_id, occurred_at DESC);
CREATE INDEX messages_conversation_idx ON messages (conversation_id, occurred_at);
CREATE INDEX messages_ticket_idx ON messages (ticket_id, occurred_at);
CREATE INDEX messages_escalation_idx ON messages (escalation_id) WHERE escalation_id IS NOT NULL;

-- A reply is sent at most once: one outbox row per inbound message (or human reply).
CREATE TABLE reply_outbox (
    id                  bigserial PRIMARY KEY,
    inbound_key         text   NOT NULL UNIQUE,
    kind                text   NOT NULL,
    channel             text   NOT NULL,
    customer_id         bigint REFERENCES customers (id),
    conversation_id     bigint REFERENCES conversations (id),
    ticket_id           text REFERENCES tickets (id),
    escalation_id       bigint REFERENCES escalations (id),
    recipient           text   NOT NULL,
    subject             text,
    body                text   NOT NULL,
    payload             jsonb  NOT NULL DEFAULT '{}',  -- parts, html, headers, thread id
    status              text   NOT NULL DEFAULT 'pending'
                        CHECK (status IN ('pending', 'sending', 'sent', 'parked', 'failed')),
    parts_sent          integer NOT NULL DEFAULT 0,
    attempts            integer NOT NULL DEFAULT 0,
    next_attempt_at     timestamptz NOT NULL DEFAULT now(),
    last_error          text,
    provider_message_ids text[] NOT NULL DEFAULT '{}',
    created_at          timestamptz NOT NULL DEFAULT now(),
    sent_at             timestamptz
);
CREATE INDEX reply_outbox_due_idx ON reply_outbox (channel, next_attempt_at)
    WHERE status IN ('pending', 'parked', 'sending');
CREATE INDEX reply_outbox_customer_idx ON reply_outbox (customer_id, created_at DESC);

-- Where each channel poller left off (e.g. Gmail historyId per mailbox).
CREATE TABLE channel_cursors (
    channel    text NOT NULL,
    account    text NOT NULL,
    cursor     text NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (channel, account)
);

-- Knowledge base: article chunks with full-text and embedding search.
CREATE TABLE knowledge_base (
    id           bigserial PRIMARY KEY,
    slug         text   NOT NULL,
    chunk_index  integer NOT NULL DEFAULT 0,
    title        text   NOT NULL,
    body         text   NOT NULL,
    intents      text[] NOT NULL DEFAULT '{}',
    tags         text[] NOT NULL DEFAULT '{}',
    source       text,
    content_hash text   NOT NULL,
    tsv          tsvector GENERATED ALWAYS AS (
                     setweight(to_tsvector('english', coalesce(title, '')), 'A')
                     || setweight(to_tsvector('english', coalesce(body, '')), 'B')
                 ) STORED,
    embedding    vector(384),
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (slug, chunk_index)
);
CREATE INDEX knowledge_base_tsv_idx ON knowledge_base USING gin (tsv);
CREATE INDEX knowledge_base_intents_idx ON knowledge_base USING gin (intents);
CREATE INDEX knowledge_base_embedding_idx ON knowledge_base
    USING hnsw (embedding vector_cosine_ops);

-- What each answer drew on, and which questions found nothing.
CREATE TABLE kb_lookups (
    id          bigserial PRIMARY KEY,
    inbound_key text   NOT NULL UNIQUE,
    channel     text   NOT NULL,
    query       text   NOT NULL,
    top_kb_id   bigint REFERENCES knowledge_base (id) ON DELETE SET NULL,
    top_slug    text,
    score       real,
    answered    boolean NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX kb_lookups_slug_idx ON kb_lookups (top_slug, created_at);
CREATE INDEX kb_lookups_unanswered_idx ON kb_lookups (created_at) WHERE NOT answered;

-- Agent results by inbound message, so a replay after recovery does not call again.
CREATE TABLE agent_results (
    inbound_key text PRIMARY KEY,
    provider    text   NOT NULL,
    result      jsonb  NOT NULL,
    tokens      integer NOT NULL DEFAULT 0,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- Metrics, one row per (channel, 1-minute window); upserted so replays never duplicate.
CREATE TABLE metric_windows (
    channel               text NOT NULL,
    window_start          timestamptz NOT NULL,
    window_end            timestamptz NOT NULL,
    received              integer NOT NULL DEFAULT 0,
    replied               integer NOT NULL DEFAULT 0,
    escalated             integer NOT NULL DEFAULT 0,
    sent                  integer NOT NULL DEFAULT 0,
    failed                integer NOT NULL DEFAULT 0,
    first_response_p50_ms double precision,
    first_response_p95_ms double precision,
    sentiment_mean        double precision,
    agent_tokens          integer NOT NULL DEFAULT 0,
    kb_lookups            integer NOT NULL DEFAULT 0,
    kb_hits               integer NOT NULL DEFAULT 0,
    updated_at            timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (channel, window_start)
);
CREATE INDEX metric_windows_start_idx ON metric_windows (window_start);

CREATE TABLE sla_events (
    id          bigserial PRIMARY KEY,
    ticket_id   text NOT NULL,
    channel     text NOT NULL,
    priority    text NOT NULL,
    kind        text NOT NULL CHECK (kind IN ('breach', 'met')),
    deadline    timestamptz NOT NULL,
    occurred_at timestamptz NOT NULL,
    UNIQUE (ticket_id, kind)
);
CREATE INDEX sla_events_time_idx ON sla_events (occurred_at DESC);

CREATE TABLE alerts (
    id        bigserial PRIMARY KEY,
    kind      text NOT NULL,
    bucket    timestamptz NOT NULL,  -- dedup: one alert a kind per bucket
    value     double precision NOT NULL,
    threshold double precision NOT NULL,
    detail    jsonb NOT NULL DEFAULT '{}',
    raised_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (kind, bucket)
);
CREATE INDEX alerts_time_idx ON alerts (raised_at DESC);

CREATE TABLE dead_letters (
    id           bigserial PRIMARY KEY,
    source_topic text   NOT NULL,
    partition    integer,
    "offset"     bigint,
    msg_key      bytea,
    raw          bytea  NOT NULL,
    reason       text   NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    replayed_at  timestamptz,
    replayed_by  text
);
CREATE UNIQUE INDEX dead_letters_source_idx ON dead_letters (source_topic, partition, "offset")
    WHERE partition IS NOT NULL AND "offset" IS NOT NULL;
CREATE INDEX dead_letters_time_idx ON dead_letters (created_at DESC);
