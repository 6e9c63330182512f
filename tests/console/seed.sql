-- A small support day: three customers (one merged), escalations, windows, SLA outcomes
-- and knowledge-base usage. Times are relative to now(), never before today's midnight, so
-- "today" holds whenever the test runs.
INSERT INTO customers (id, display_name, created_at) VALUES
  (1, 'Ada Lovelace', greatest(date_trunc('day', now()), now() - interval '3 days')),
  (2, 'Grace Hopper', greatest(date_trunc('day', now()), now() - interval '2 days')),
  (3, 'G. Hopper (web)', greatest(date_trunc('day', now()), now() - interval '1 day')),
  (4, 'Linus Quiet', greatest(date_trunc('day', now()), now() - interval '1 day'));
UPDATE customers SET merged_into = 2 WHERE id = 3;
SELECT setval('customers_id_seq', 100);

INSERT INTO customer_identifiers (customer_id, kind, value, first_channel) VALUES
  (1, 'email', 'ada@example.com', 'email'),
  (1, 'phone', '+15550100100', 'web'),
  (2, 'phone', '+15550100200', 'whatsapp'),
  (2, 'email', 'grace@example.org', 'web'),
  (4, 'email', 'linus@example.net', 'email');

INSERT INTO customer_merges (survivor_id, merged_id, reason, moved, merged_at) VALUES
  (2, 3, 'web form linked phone +15550100200 and grace@example.org', '{"messages": 1, "tickets": 1}', greatest(date_trunc('day', now()), now() - interval '20 hours'));

INSERT INTO conversations (id, customer_id, first_channel, last_channel, opened_at) VALUES
  (1, 1, 'email', 'whatsapp', greatest(date_trunc('day', now()), now() - interval '2 hours')),
  (2, 2, 'whatsapp', 'whatsapp', greatest(date_trunc('day', now()), now() - interval '90 minutes')),
  (3, 4, 'email', 'email', greatest(date_trunc('day', now()), now() - interval '1 hour'));
SELECT setval('conversations_id_seq', 100);

INSERT INTO tickets (id, customer_id, conversation_id, channel, subject, priority, status, created_at, first_response_at) VALUES
  ('T-ada-1', 1, 1, 'email', 'Refund for order 1234', 'normal', 'escalated', greatest(date_trunc('day', now()), now() - interval '2 hours'), greatest(date_trunc('day', now()), now() - interval '2 hours') + interval '2 seconds'),
  ('T-grace-1', 2, 2, 'whatsapp', NULL, 'high', 'escalated', greatest(date_trunc('day', now()), now() - interval '90 minutes'), greatest(date_trunc('day', now()), now() - interval '90 minutes') + interval '1 second'),
  ('T-linus-1', 4, 3, 'email', 'Where is my parcel?', 'normal', 'answered', greatest(date_trunc('day', now()), now() - interval '1 hour'), greatest(date_trunc('day', now()), now() - interval '1 hour') + interval '4 seconds');

INSERT INTO messages (channel, channel_message_id, direction, author, customer_id, conversation_id, ticket_id, subject, body, sentiment, metadata, occurred_at) VALUES
  ('email', 'gm-ada-1', 'inbound', 'customer', 1, 1, 'T-ada-1', 'Refund for order 1234', 'I want a refund for order 1234, the blender arrived broken.', -0.4, '{"thread_id": "thr-ada", "message_id_header": "<ada-1@example.com>", "sender": ["ada@example.com"]}', greatest(date_trunc('day', now()), now() - interval '2 hours')),
  ('email', 'ack-ada-1', 'outbound', 'agent', 1, 1, 'T-ada-1', 'Re: Refund for order 1234', 'Thanks Ada, a person from our team will follow up on your refund.', NULL, '{}', greatest(date_trunc('day', now()), now() - interval '2 hours') + interval '2 seconds'),
  ('whatsapp', 'SMada2', 'inbound', 'customer', 1, 1, NULL, NULL, 'Any news on my refund? Still waiting.', -0.2, '{"profile_name": "Ada", "sender": ["+15550100100"]}', greatest(date_trunc('day', now()), now() - interval '30 minutes')),
  ('whatsapp', 'SMgrace1', 'inbound', 'customer', 2, 2, 'T-grace-1', NULL, 'I need to talk to a human agent please', 0.1, '{"profile_name": "Grace", "sender": ["+15550100200"]}', greatest(date_trunc('day', now()), now() - interval '90 minutes')),
  ('email', 'gm-linus-1', 'inbound', 'customer', 4, 3, 'T-linus-1', 'Where is my parcel?', 'Where is my parcel? Tracking says nothing.', 0.0, '{"sender": ["linus@example.net"], "message_id_header": "<linus-1@example.net>"}', greatest(date_trunc('day', now()), now() - interval '1 hour')),
  ('email', 'out-linus-1', 'outbound', 'agent', 4, 3, 'T-linus-1', 'Re: Where is my parcel?', 'You can track your order from your account page.', NULL, '{}', greatest(date_trunc('day', now()), now() - interval '1 hour') + interval '4 seconds');

INSERT INTO escalations (id, customer_id, conversation_id, ticket_id, inbound_key, channel, reason, detail, priority, status, created_at) VALUES
  (1, 1, 1, 'T-ada-1', 'email:gm-ada-1', 'email', 'refund', 'asked for a refund', 'normal', 'open', greatest(date_trunc('day', now()), now() - interval '2 hours')),
  (2, 2, 2, 'T-grace-1', 'whatsapp:SMgrace1', 'whatsapp', 'human_requested', 'asked for a person', 'high', 'open', greatest(date_trunc('day', now()), now() - interval '90 minutes'));
SELECT setval('escalations_id_seq', 100);

INSERT INTO reply_outbox (inbound_key, kind, channel, customer_id, recipient, body, status, created_at, sent_at, last_error, payload) VALUES
  ('email:gm-linus-1', 'agent', 'email', 4, 'linus@example.net', 'You can track your order from your account page.', 'sent', greatest(date_trunc('day', now()), now() - interval '1 hour'), greatest(date_trunc('day', now()), now() - interval '1 hour'), NULL, '{"thread_id": "thr-linus"}'),
  ('email:gm-ada-1', 'escalation_ack', 'email', 1, 'ada@example.com', 'Thanks Ada, a person will follow up.', 'sent', greatest(date_trunc('day', now()), now() - interval '2 hours'), greatest(date_trunc('day', now()), now() - interval '2 hours'), NULL, '{}'),
  ('whatsapp:SMgrace1', 'escalation_ack', 'whatsapp', 2, 'whatsapp:+15550100200', 'A person will follow up.', 'parked', greatest(date_trunc('day', now()), now() - interval '90 minutes'), NULL, 'HTTP 503 from Twilio', '{}');

INSERT INTO metric_windows (channel, window_start, window_end, received, replied, escalated, first_response_p50_ms, first_response_p95_ms, sentiment_mean) VALUES
  ('email', date_trunc('minute', now()) - interval '10 minutes', date_trunc('minute', now()) - interval '9 minutes', 4, 3, 1, 900, 2100, 0.1),
  ('email', date_trunc('minute', now()) - interval '5 minutes', date_trunc('minute', now()) - interval '4 minutes', 6, 5, 1, 1000, 2600, 0.2),
  ('whatsapp', date_trunc('minute', now()) - interval '10 minutes', date_trunc('minute', now()) - interval '9 minutes', 7, 6, 1, 700, 1500, -0.1),
  ('whatsapp', date_trunc('minute', now()) - interval '5 minutes', date_trunc('minute', now()) - interval '4 minutes', 9, 7, 2, 800, 4200, -0.3),
  ('web', date_trunc('minute', now()) - interval '5 minutes', date_trunc('minute', now()) - interval '4 minutes', 3, 3, 0, 600, 1200, 0.4);

INSERT INTO sla_events (ticket_id, channel, priority, kind, deadline, occurred_at) VALUES
  ('T-grace-1', 'whatsapp', 'high', 'breach', greatest(date_trunc('day', now()), now() - interval '88 minutes'), greatest(date_trunc('day', now()), now() - interval '88 minutes')),
  ('T-linus-1', 'email', 'normal', 'met', now() + interval '3 hours', greatest(date_trunc('day', now()), now() - interval '1 hour'));

INSERT INTO alerts (kind, bucket, value, threshold, detail, raised_at) VALUES
  ('first_response_p95', date_trunc('minute', now()) - interval '5 minutes', 4.2, 3.0, '{"channel": "whatsapp"}', greatest(date_trunc('day', now()), now() - interval '4 minutes'));

INSERT INTO knowledge_base (slug, chunk_index, title, body, intents, tags, content_hash) VALUES
  ('refund-policy', 0, 'Refund policy', 'Refunds are issued to the original payment method within 5 business days of the return arriving.', '{get_refund,check_refund_policy}', '{billing}', 'h1'),
  ('track-order', 0, 'Track your order', 'Open Orders in your account and choose Track to see where your parcel is.', '{track_order}', '{delivery}', 'h2');

INSERT INTO kb_lookups (inbound_key, channel, query, top_slug, score, answered, created_at) VALUES
  ('email:gm-linus-1', 'email', 'Where is my parcel?', 'track-order', 0.82, true, greatest(date_trunc('day', now()), now() - interval '1 hour')),
  ('web:k1', 'web', 'how do I track an order', 'track-order', 0.77, true, greatest(date_trunc('day', now()), now() - interval '40 minutes')),
  ('web:k2', 'web', 'refund policy please', 'refund-policy', 0.71, true, greatest(date_trunc('day', now()), now() - interval '30 minutes')),
  ('whatsapp:k3', 'whatsapp', 'do you sell gift wrapping for mattresses', 'refund-policy', 0.12, false, greatest(date_trunc('day', now()), now() - interval '20 minutes'));

INSERT INTO dispatcher_breakers (dispatcher, channel, state, consecutive_failures, opened_at, updated_at) VALUES
  ('pod-a:41', 'whatsapp', 'open', 5, now() - interval '20 seconds', now()),
  ('pod-a:41', 'email', 'closed', 0, NULL, now()),
  ('pod-gone:7', 'web', 'closed', 0, NULL, now() - interval '10 minutes');
