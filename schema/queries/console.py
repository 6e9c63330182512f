"""SQL of the support console, as constants with bound parameters (never string formatting).

Reads name their columns for the page that shows them; writes guard their own
preconditions in the WHERE clause so a double click or a stale page changes nothing twice.
"""

# --- overview --------------------------------------------------------------------------
# Today's figures from the tables of record (they do not depend on the metrics flow).
# Escalation rate follows the metrics flow: escalated / (agent answers + escalations).
KPIS_TODAY = """
WITH day AS (SELECT date_trunc('day', now()) AS start)
SELECT
  (SELECT count(*) FROM messages, day
    WHERE direction = 'inbound' AND occurred_at >= day.start)                    AS volume,
  (SELECT count(*) FROM escalations, day WHERE created_at >= day.start)          AS escalated,
  (SELECT count(*) FROM reply_outbox, day
    WHERE kind IN ('agent', 'clarify') AND created_at >= day.start)              AS answered,
  (SELECT percentile_cont(0.95) WITHIN GROUP (
            ORDER BY extract(epoch FROM first_response_at - created_at))
     FROM tickets, day
    WHERE created_at >= day.start AND first_response_at IS NOT NULL)             AS p95_first_response_s,
  (SELECT max(first_response_p95_ms) / 1000.0 FROM metric_windows, day
    WHERE window_start >= day.start)                                             AS window_p95_s,
  (SELECT count(*) FROM sla_events, day
    WHERE kind = 'breach' AND occurred_at >= day.start)                          AS sla_breaches,
  (SELECT count(*) FROM escalations WHERE status IN ('open', 'assigned'))        AS open_escalations,
  (SELECT extract(epoch FROM now() - min(created_at)) FROM escalations
    WHERE status IN ('open', 'assigned'))                                        AS oldest_open_s,
  (SELECT avg(sentiment) FROM messages, day
    WHERE direction = 'inbound' AND occurred_at >= day.start)                    AS sentiment_mean
"""

# Messages a minute per channel (metrics flow windows).
VOLUME_SINCE = """
SELECT channel, window_start, received, replied, escalated, sentiment_mean
  FROM metric_windows
 WHERE window_start >= %(since)s
 ORDER BY window_start
"""

ESCALATIONS_BY_REASON_TODAY = """
SELECT reason, count(*) AS n
  FROM escalations
 WHERE created_at >= date_trunc('day', now())
 GROUP BY reason
 ORDER BY n DESC
"""

INBOUND_BY_CHANNEL_TODAY = """
SELECT channel, count(*) AS n, avg(sentiment) AS sentiment
  FROM messages
 WHERE direction = 'inbound' AND occurred_at >= date_trunc('day', now())
 GROUP BY channel
 ORDER BY channel
"""

RECENT_ALERTS = """
SELECT raised_at, kind, value, threshold, detail
  FROM alerts
 ORDER BY raised_at DESC
 LIMIT %(limit)s
"""

# --- SLA -------------------------------------------------------------------------------
P95_SINCE = """
SELECT channel, window_start, first_response_p50_ms, first_response_p95_ms, replied
  FROM metric_windows
 WHERE window_start >= %(since)s AND first_response_p95_ms IS NOT NULL
 ORDER BY window_start
"""

SLA_BREACHES_SINCE = """
SELECT s.occurred_at, s.ticket_id, s.channel, s.priority, s.deadline,
       t.subject, t.status AS ticket_status, t.first_response_at,
       c.display_name AS customer
  FROM sla_events s
  LEFT JOIN tickets t ON t.id = s.ticket_id
  LEFT JOIN customers c ON c.id = t.customer_id
 WHERE s.kind = 'breach' AND s.occurred_at >= %(since)s
 ORDER BY s.occurred_at DESC
 LIMIT 500
"""

SLA_COUNTS_SINCE = """
SELECT channel, kind, count(*) AS n
  FROM sla_events
 WHERE occurred_at >= %(since)s
 GROUP BY channel, kind
"""

# --- escalations -----------------------------------------------------------------------
ESCALATION_QUEUE = """
SELECT e.id, e.status, e.reason, e.channel, e.priority, e.assigned_to,
       e.created_at, e.detail, e.ticket_id, e.customer_id,
       coalesce(c.display_name, '') AS customer,
       extract(epoch FROM now() - e.created_at) AS age_s,
       (SELECT count(*) FROM messages m
         WHERE m.customer_id = e.customer_id AND m.direction = 'inbound'
           AND m.occurred_at >= e.created_at) AS messages_since
  FROM escalations e
  JOIN customers c ON c.id = e.customer_id
 WHERE e.status = ANY(%(statuses)s)
   AND e.reason = ANY(%(reasons)s)
   AND e.channel = ANY(%(channels)s)
   AND e.created_at <= now() - make_interval(secs => %(min_age_s)s)
 ORDER BY CASE e.priority WHEN 'urgent' THEN 0 WHEN 'high' THEN 1 WHEN 'normal' THEN 2 ELSE 3 END,
          e.created_at
 LIMIT 500
"""

ESCALATION_REASONS_SEEN = "SELECT DISTINCT reason FROM escalations ORDER BY reason"

ESCALATION = """
SELECT e.*, coalesce(c.display_name, '') AS customer
  FROM escalations e JOIN customers c ON c.id = e.customer_id
 WHERE e.id = %(id)s
"""

# The triggering message and everything the customer (and we) said since, on any channel.
MESSAGES_SINCE_ESCALATION = """
SELECT m.occurred_at, m.channel, m.direction, m.author, m.subject, m.body, m.sentiment
  FROM messages m
 WHERE m.customer_id = %(customer_id)s
   AND (m.occurred_at >= %(since)s OR m.escalation_id = %(escalation_id)s
        OR m.channel || ':' || m.channel_message_id = %(inbound_key)s)
 ORDER BY m.occurred_at, m.id
"""

# The acknowledgement(s) the customer got: when a person will follow up.
ACKS_OF_ESCALATION = """
SELECT kind, status, body, created_at, sent_at
  FROM reply_outbox
 WHERE kind IN ('escalation_ack', 'holding')
   AND (inbound_key = %(inbound_key)s OR escalation_id = %(escalation_id)s)
 ORDER BY created_at
"""

ASSIGN_ESCALATION = """
UPDATE escalations
   SET status = 'assigned', assigned_to = %(user)s, assigned_at = now()
 WHERE id = %(id)s AND status IN ('open', 'assigned')
RETURNING id
"""

RESOLVE_ESCALATION = """
UPDATE escalations
   SET status = 'resolved', resolved_at = now(), resolved_by = %(user)s,
       resolution_note = %(note)s
 WHERE id = %(id)s AND status IN ('open', 'assigned')
RETURNING id, ticket_id
"""

RESOLVE_TICKET = """
UPDATE tickets SET status = 'resolved', resolved_at = now(), updated_at = now()
 WHERE id = %(id)s AND status IN ('open', 'escalated', 'answered')
"""

# Where a human reply goes: the customer's most recent inbound message on any channel.
LAST_INBOUND = """
SELECT m.channel, m.channel_message_id, m.subject, m.metadata, m.ticket_id,
       m.conversation_id, m.occurred_at
  FROM messages m
 WHERE m.customer_id = %(customer_id)s AND m.direction = 'inbound'
 ORDER BY m.occurred_at DESC, m.id DESC
 LIMIT 1
"""

# The message that opened an escalation: a human reply goes back to its channel and sender.
ESCALATION_INBOUND = """
SELECT m.channel, m.channel_message_id, m.subject, m.metadata, m.ticket_id,
       m.conversation_id, m.occurred_at
  FROM messages m
 WHERE m.channel = %(channel)s AND m.channel_message_id = %(channel_message_id)s
   AND m.direction = 'inbound'
"""

THREAD_OF_REPLY_TO = """
SELECT payload->>'thread_id' AS thread_id FROM reply_outbox
 WHERE inbound_key = %(inbound_key)s AND payload->>'thread_id' IS NOT NULL
"""

IDENTIFIERS_OF = """
SELECT kind, value, first_channel, created_at
  FROM customer_identifiers
 WHERE customer_id = %(customer_id)s
 ORDER BY created_at
"""

# The latest earlier contact on another channel, for "I see you emailed us on ...".
PREVIOUS_CONTACT = """
SELECT channel, occurred_at, coalesce(subject, left(body, 80)) AS subject_or_summary
  FROM messages
 WHERE customer_id = %(customer_id)s AND direction = 'inbound' AND channel <> %(channel)s
 ORDER BY occurred_at DESC
 LIMIT 1
"""

# --- customers -------------------------------------------------------------------------
SEARCH_CUSTOMERS = """
SELECT c.id, c.display_name, c.created_at, c.merged_into,
       (SELECT string_agg(i.kind || ': ' || i.value, ', ' ORDER BY i.created_at)
          FROM customer_identifiers i WHERE i.customer_id = c.id) AS identifiers,
       (SELECT max(m.occurred_at) FROM messages m WHERE m.customer_id = c.id) AS last_message_at
  FROM customers c
 WHERE c.id IN (
         SELECT customer_id FROM customer_identifiers
          WHERE value LIKE %(prefix)s OR value = %(email)s OR value = %(phone)s
         UNION
         SELECT id FROM customers WHERE lower(display_name) LIKE %(name)s)
 ORDER BY last_message_at DESC NULLS LAST, c.id
 LIMIT 50
"""

CUSTOMER = "SELECT id, display_name, created_at, merged_into FROM customers WHERE id = %(id)s"

MERGES_OF = """
SELECT m.merged_at, m.survivor_id, s.display_name AS survivor, m.merged_id,
       g.display_name AS merged, m.reason, m.moved
  FROM customer_merges m
  JOIN customers s ON s.id = m.survivor_id
  JOIN customers g ON g.id = m.merged_id
 WHERE m.survivor_id = %(id)s OR m.merged_id = %(id)s
 ORDER BY m.merged_at
"""

TIMELINE = """
SELECT m.occurred_at, m.channel, m.direction, m.author, m.subject, m.body,
       m.sentiment, m.ticket_id, m.escalation_id
  FROM messages m
 WHERE m.customer_id = %(id)s
 ORDER BY m.occurred_at DESC, m.id DESC
 LIMIT %(limit)s
"""

TICKETS_OF = """
SELECT id, channel, subject, category, priority, status, created_at, first_response_at
  FROM tickets WHERE customer_id = %(id)s ORDER BY created_at DESC LIMIT 100
"""

ESCALATIONS_OF = """
SELECT id, status, reason, channel, created_at, assigned_to, resolved_by, resolved_at
  FROM escalations WHERE customer_id = %(id)s ORDER BY created_at DESC LIMIT 100
"""

# --- knowledge base --------------------------------------------------------------------
KB_ARTICLES = """
SELECT kb.slug, first.title, count(*) AS chunks, first.intents, first.tags,
       max(kb.updated_at) AS updated_at, bool_and(kb.embedding IS NOT NULL) AS embedded
  FROM knowledge_base kb
  JOIN knowledge_base first ON first.slug = kb.slug
       AND first.chunk_index = (SELECT min(chunk_index) FROM knowledge_base WHERE slug = kb.slug)
 WHERE %(query)s = ''
    OR kb.tsv @@ websearch_to_tsquery('english', %(query)s)
    OR kb.slug ILIKE %(like)s OR kb.title ILIKE %(like)s
 GROUP BY kb.slug, first.title, first.intents, first.tags
 ORDER BY max(ts_rank(kb.tsv, websearch_to_tsquery('english', %(query)s))) DESC, kb.slug
 LIMIT 200
"""

KB_ARTICLE = """
SELECT slug, chunk_index, title, body, intents, tags, source, updated_at
  FROM knowledge_base WHERE slug = %(slug)s ORDER BY chunk_index
"""

KB_TOP_ANSWERING = """
SELECT top_slug AS slug, count(*) AS answers, avg(score) AS mean_score
  FROM kb_lookups
 WHERE answered AND top_slug IS NOT NULL AND created_at >= %(since)s
 GROUP BY top_slug
 ORDER BY answers DESC
 LIMIT %(limit)s
"""

KB_UNANSWERED = """
SELECT created_at, channel, query, top_slug AS nearest, score
  FROM kb_lookups
 WHERE NOT answered AND created_at >= %(since)s
 ORDER BY created_at DESC
 LIMIT %(limit)s
"""

# --- dead letters ----------------------------------------------------------------------
DEAD_LETTERS = """
SELECT id, created_at, source_topic, partition, "offset", reason, length(raw) AS bytes,
       replayed_at, replayed_by
  FROM dead_letters
 WHERE (%(include_replayed)s OR replayed_at IS NULL)
 ORDER BY created_at DESC, id DESC
 LIMIT 500
"""

DEAD_LETTER = """
SELECT id, created_at, source_topic, partition, "offset", msg_key, raw, reason,
       replayed_at, replayed_by
  FROM dead_letters WHERE id = %(id)s
"""

# Locks the row so two leads replaying at once produce it once.
DEAD_LETTER_FOR_REPLAY = """
SELECT id, source_topic, msg_key, raw, replayed_at
  FROM dead_letters WHERE id = %(id)s FOR UPDATE
"""

MARK_REPLAYED = """
UPDATE dead_letters SET replayed_at = now(), replayed_by = %(user)s
 WHERE id = %(id)s AND replayed_at IS NULL
"""

DEAD_LETTERS_BY_REASON = """
SELECT source_topic, split_part(reason, ':', 1) AS reason, count(*) AS n
  FROM dead_letters
 WHERE replayed_at IS NULL
 GROUP BY 1, 2
 ORDER BY n DESC
 LIMIT 20
"""

# --- system ----------------------------------------------------------------------------
POSTGRES_HEALTH = """
SELECT version() AS version,
       pg_database_size(current_database()) AS database_bytes,
       (SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()) AS connections,
       now() - pg_postmaster_start_time() AS uptime
"""

FLOW_PROGRESS = """
SELECT flow, topic, partition, next_offset, updated_at FROM flow_progress
 ORDER BY flow, topic, partition
"""

OUTBOX_BY_CHANNEL = """
SELECT channel,
       count(*) FILTER (WHERE status = 'pending')  AS pending,
       count(*) FILTER (WHERE status = 'sending')  AS sending,
       count(*) FILTER (WHERE status = 'parked')   AS parked,
       count(*) FILTER (WHERE status = 'failed')   AS failed,
       count(*) FILTER (WHERE status = 'sent')     AS sent,
       max(sent_at) AS last_sent_at,
       max(created_at) FILTER (WHERE status IN ('parked', 'failed')) AS last_stuck_at,
       (array_agg(last_error ORDER BY created_at DESC)
          FILTER (WHERE last_error IS NOT NULL AND status <> 'sent'))[1] AS last_error
  FROM reply_outbox
 GROUP BY channel
 ORDER BY channel
"""

# Breaker states reported by live dispatchers (a report older than a minute is a stopped one).
BREAKERS = """
SELECT channel, state, consecutive_failures, opened_at, dispatcher, updated_at
  FROM dispatcher_breakers
 WHERE updated_at > now() - interval '1 minute'
 ORDER BY channel, dispatcher
"""

TABLE_EXISTS = "SELECT to_regclass(%(name)s) IS NOT NULL AS present"

# --- audit -----------------------------------------------------------------------------
AUDIT = """
INSERT INTO console_audit (actor, action, target, detail) VALUES (%(actor)s, %(action)s, %(target)s, %(detail)s)
"""

RECENT_AUDIT = """
SELECT at, actor, action, target, detail FROM console_audit ORDER BY at DESC LIMIT %(limit)s
"""

# --- login throttling (migration 030): per user name, shared by every console replica -----
RECENT_LOGIN_FAILURES = """
SELECT failed_at FROM console_login_failures
 WHERE username = %(username)s AND failed_at > now() - make_interval(secs => %(window_s)s)
 ORDER BY failed_at DESC LIMIT 100
"""

RECORD_LOGIN_FAILURE = """
INSERT INTO console_login_failures (username) VALUES (%(username)s) RETURNING failed_at
"""

CLEAR_LOGIN_FAILURES = """
DELETE FROM console_login_failures WHERE username = %(username)s
"""

DB_NOW = "SELECT now() AS now"

OUTBOX_ROW = """
SELECT id, status FROM reply_outbox WHERE inbound_key = %(inbound_key)s
"""
