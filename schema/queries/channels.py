"""SQL for the channels: dispatcher claims, delivery status, escalations of failed
deliveries, the WhatsApp inbox, the Gmail watch and per-channel intake health."""

# --- dispatcher -------------------------------------------------------------------------------
CLAIM = """
WITH due AS (
    SELECT id, status AS prev_status, claimed_at AS prev_claimed_at FROM reply_outbox
    WHERE channel = %(channel)s AND status IN ('pending', 'parked', 'sending')
      AND next_attempt_at <= now()
    ORDER BY next_attempt_at, id
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
UPDATE reply_outbox r
SET status = 'sending', attempts = r.attempts + 1, claimed_at = now(),
    claim_token = gen_random_uuid(),
    next_attempt_at = now() + make_interval(secs => %(lease)s)
FROM due WHERE r.id = due.id
RETURNING r.*, due.prev_status, due.prev_claimed_at
"""

# Every update of a claimed row names the claim: a stale claim matches nothing.
RENEW_LEASE = """
UPDATE reply_outbox SET next_attempt_at = now() + make_interval(secs => %(lease)s)
WHERE id = %(id)s AND claim_token = %(token)s AND status = 'sending'
"""
RECORD_PART = """
UPDATE reply_outbox SET parts_sent = %(parts_sent)s, provider_message_ids = %(ids)s, in_doubt = false
WHERE id = %(id)s AND claim_token = %(token)s AND status = 'sending'
"""
RELEASE = """
UPDATE reply_outbox SET status = %(prev_status)s, attempts = attempts - 1, next_attempt_at = now()
WHERE id = %(id)s AND claim_token = %(token)s AND status = 'sending'
"""
MARK_FAILED = """
UPDATE reply_outbox SET status = 'failed', last_error = %(error)s, claim_token = NULL
WHERE id = %(id)s AND claim_token = %(token)s AND status = 'sending'
"""
MARK_PARKED = """
UPDATE reply_outbox SET status = 'parked', last_error = %(error)s, in_doubt = %(in_doubt)s,
       next_attempt_at = now() + make_interval(secs => %(delay)s), claim_token = NULL
WHERE id = %(id)s AND claim_token = %(token)s AND status = 'sending'
"""
MARK_SENT = """
UPDATE reply_outbox SET status = 'sent', sent_at = now(), last_error = NULL, claim_token = NULL
WHERE id = %(id)s AND claim_token = %(token)s AND status = 'sending'
"""
MARK_REROUTED = """
UPDATE reply_outbox SET status = 'rerouted', last_error = %(error)s, claim_token = NULL
WHERE id = %(id)s AND claim_token = %(token)s AND status = 'sending'
"""
FIRST_RESPONSE = """
UPDATE tickets SET first_response_at = coalesce(first_response_at, now()) WHERE id = %(ticket_id)s
"""
KNOWN_PROVIDER_IDS = """
SELECT unnest(provider_message_ids) AS id FROM reply_outbox WHERE channel = %s AND recipient = %s
"""

# --- WhatsApp session window and other channels -----------------------------------------------
LAST_WHATSAPP_INBOUND = """
SELECT max(occurred_at) AS at FROM messages
WHERE customer_id = %(customer_id)s AND channel = 'whatsapp' AND direction = 'inbound'
"""
CUSTOMER_EMAIL = """
SELECT value FROM customer_identifiers WHERE customer_id = %(customer_id)s AND kind = 'email'
ORDER BY created_at LIMIT 1
"""
TICKET_CONTACT = """
SELECT id, subject, contact_email, contact_email_verified FROM tickets WHERE id = %(ticket_id)s
"""
INSERT_DERIVED_REPLY = """
INSERT INTO reply_outbox (inbound_key, kind, channel, customer_id, conversation_id, ticket_id,
                          escalation_id, recipient, subject, body, payload)
VALUES (%(inbound_key)s, %(kind)s, %(channel)s, %(customer_id)s, %(conversation_id)s,
        %(ticket_id)s, %(escalation_id)s, %(recipient)s, %(subject)s, %(body)s, %(payload)s)
ON CONFLICT (inbound_key) DO NOTHING
RETURNING id
"""

# --- delivery status (Twilio status callbacks) --------------------------------------------------
OUTBOX_BY_PROVIDER_ID = """
SELECT id, channel, customer_id, conversation_id, ticket_id, kind, inbound_key,
       array_position(provider_message_ids, %(sid)s) - 1 AS part
FROM reply_outbox WHERE provider_message_ids @> ARRAY[%(sid)s]::text[]
"""
# Statuses only move forward (callbacks may arrive out of order); a failure is final.
UPSERT_DELIVERY = """
INSERT INTO outbox_deliveries (provider_message_id, outbox_id, part, channel, status, error_code,
                               error_message)
VALUES (%(sid)s, %(outbox_id)s, %(part)s, %(channel)s, %(status)s, %(error_code)s, %(error_message)s)
ON CONFLICT (provider_message_id) DO UPDATE
   SET status = EXCLUDED.status, error_code = EXCLUDED.error_code,
       error_message = EXCLUDED.error_message, updated_at = now(),
       outbox_id = coalesce(outbox_deliveries.outbox_id, EXCLUDED.outbox_id),
       part = coalesce(outbox_deliveries.part, EXCLUDED.part)
   WHERE outbox_deliveries.status NOT IN ('failed', 'undelivered')
     AND %(rank)s > CASE outbox_deliveries.status
                      WHEN 'accepted' THEN 0 WHEN 'scheduled' THEN 0 WHEN 'queued' THEN 1
                      WHEN 'sending' THEN 2 WHEN 'sent' THEN 3 WHEN 'delivered' THEN 4
                      WHEN 'read' THEN 5 ELSE 0 END
RETURNING status
"""
# One escalation per failed provider message; ON CONFLICT also covers an escalation already
# active for the customer (the person working it sees the failure on the ticket).
ESCALATE_DELIVERY_FAILURE = """
INSERT INTO escalations (customer_id, conversation_id, ticket_id, inbound_key, channel, reason,
                         detail, priority)
VALUES (%(customer_id)s, %(conversation_id)s, %(ticket_id)s, %(inbound_key)s, %(channel)s,
        'delivery_failed', %(detail)s, 'high')
ON CONFLICT DO NOTHING
RETURNING id
"""
TICKET_ESCALATED = """
UPDATE tickets SET status = 'escalated', updated_at = now() WHERE id = %(ticket_id)s
"""

# --- WhatsApp inbox -------------------------------------------------------------------------------
INBOX_INSERT = """
INSERT INTO whatsapp_inbox (message_sid, form) VALUES (%s, %s)
ON CONFLICT (message_sid) DO NOTHING
"""
INBOX_NOTIFY = "SELECT pg_notify('whatsapp_inbox', '')"
INBOX_CLAIM = """
SELECT message_sid, form, received_at FROM whatsapp_inbox
WHERE relayed_at IS NULL ORDER BY received_at, message_sid LIMIT %(limit)s
FOR UPDATE SKIP LOCKED
"""
INBOX_RELAYED = "UPDATE whatsapp_inbox SET relayed_at = now(), attempts = attempts + 1 WHERE message_sid = ANY(%s)"
INBOX_RELAY_FAILED = """
UPDATE whatsapp_inbox SET attempts = attempts + 1, last_error = %s WHERE message_sid = ANY(%s)
"""

# --- Gmail watch ------------------------------------------------------------------------------------
WATCH_RENEWED = """
INSERT INTO channel_watches (channel, account, expires_at, renewed_at, mailbox_history_id)
VALUES ('email', %(account)s, %(expires_at)s, now(), %(history_id)s)
ON CONFLICT (channel, account) DO UPDATE
   SET expires_at = EXCLUDED.expires_at, renewed_at = now(),
       mailbox_history_id = greatest(channel_watches.mailbox_history_id, EXCLUDED.mailbox_history_id)
"""
WATCH_STATE = "SELECT * FROM channel_watches WHERE channel = 'email' AND account = %(account)s"
WATCH_SEEN = """
INSERT INTO channel_watches (channel, account, last_push_at, last_poll_at, mailbox_history_id)
VALUES ('email', %(account)s,
        CASE WHEN %(push)s THEN now() END, CASE WHEN %(push)s THEN NULL ELSE now() END,
        %(history_id)s)
ON CONFLICT (channel, account) DO UPDATE
   SET last_push_at = CASE WHEN %(push)s THEN now() ELSE channel_watches.last_push_at END,
       last_poll_at = CASE WHEN %(push)s THEN channel_watches.last_poll_at ELSE now() END,
       mailbox_history_id = %(history_id)s
"""
WATCH_MAILBOX_ID = """
INSERT INTO channel_watches (channel, account, mailbox_history_id) VALUES ('email', %(account)s, %(history_id)s)
ON CONFLICT (channel, account) DO UPDATE SET mailbox_history_id = EXCLUDED.mailbox_history_id
"""
WATCH_NOTE = """
INSERT INTO channel_watches (channel, account, note, note_at) VALUES ('email', %(account)s, %(note)s, now())
ON CONFLICT (channel, account) DO UPDATE SET note = EXCLUDED.note, note_at = now()
"""
CURSOR = "SELECT cursor, updated_at FROM channel_cursors WHERE channel = 'email' AND account = %(account)s"
STORE_CURSOR = """
INSERT INTO channel_cursors (channel, account, cursor) VALUES ('email', %(account)s, %(cursor)s)
ON CONFLICT (channel, account) DO UPDATE SET cursor = EXCLUDED.cursor, updated_at = now()
WHERE channel_cursors.cursor::bigint < EXCLUDED.cursor::bigint OR %(force)s
"""
KNOWN_GMAIL_IDS = """
SELECT channel_message_id FROM inbound_receipts WHERE channel = 'email' AND channel_message_id = ANY(%s)
"""
DEAD_LETTER_RECEIPT = """
INSERT INTO inbound_receipts (channel, channel_message_id, topic, kafka_partition, kafka_offset)
VALUES (%s, %s, 'deadletter', -1, -1)
ON CONFLICT (channel, channel_message_id) DO NOTHING
RETURNING 1
"""
INSERT_DEAD_LETTER = """
INSERT INTO dead_letters (source_topic, msg_key, raw, reason) VALUES (%s, %s, %s, %s)
"""
RAISE_ALERT = """
INSERT INTO alerts (kind, bucket, value, threshold, detail)
VALUES (%(kind)s, date_trunc('hour', now()), %(value)s, %(threshold)s, %(detail)s)
ON CONFLICT (kind, bucket) DO UPDATE SET detail = EXCLUDED.detail, value = EXCLUDED.value
"""

# --- intake health ----------------------------------------------------------------------------------
INTAKE_LAST_MESSAGES = """
SELECT channel, max(received_at) AS last_message_at FROM inbound_receipts
WHERE topic <> 'deadletter' GROUP BY channel
"""
INTAKE_LAST_WEB = "SELECT max(created_at) AS at FROM tickets WHERE channel = 'web'"
INTAKE_WHATSAPP_INBOX = """
SELECT max(received_at) AS last_webhook_at,
       count(*) FILTER (WHERE relayed_at IS NULL) AS pending,
       min(received_at) FILTER (WHERE relayed_at IS NULL) AS oldest_pending_at
FROM whatsapp_inbox
"""
