-- One support day, 2026-11-20 (UTC), with known figures for the report test.
INSERT INTO customers (id, display_name) VALUES (1, 'Ada'), (2, 'Grace'), (3, 'Linus');
INSERT INTO conversations (id, customer_id, first_channel, last_channel, opened_at, last_message_at) VALUES
  (1, 1, 'email', 'whatsapp', '2026-11-20 09:00Z', '2026-11-20 11:00Z'),
  (2, 2, 'whatsapp', 'whatsapp', '2026-11-20 10:00Z', '2026-11-20 10:00Z'),
  (3, 3, 'web', 'web', '2026-11-20 14:00Z', '2026-11-20 14:00Z');
-- first responses: email 60 s, whatsapp 10 s, web 20 s and 40 s
INSERT INTO tickets (id, customer_id, conversation_id, channel, priority, status, created_at, first_response_at,
                     closed_reason, reopen_count) VALUES
  ('T-1', 1, 1, 'email', 'normal', 'escalated', '2026-11-20 09:00Z', '2026-11-20 09:01Z', NULL, 0),
  ('T-2', 2, 2, 'whatsapp', 'normal', 'answered', '2026-11-20 10:00Z', '2026-11-20 10:00:10Z', NULL, 0),
  ('T-3', 3, 3, 'web', 'normal', 'answered', '2026-11-20 14:00Z', '2026-11-20 14:00:20Z', NULL, 0),
  ('T-4', 3, 3, 'web', 'normal', 'answered', '2026-11-20 15:00Z', '2026-11-20 15:00:40Z', NULL, 1),
  ('T-old', 3, 3, 'web', 'normal', 'answered', '2026-11-19 15:00Z', '2026-11-19 15:00:40Z', NULL, 0);
INSERT INTO messages (channel, channel_message_id, direction, author, customer_id, conversation_id, ticket_id, body, sentiment, occurred_at) VALUES
  ('email', 'e1', 'inbound', 'customer', 1, 1, 'T-1', 'I want a refund', -0.5, '2026-11-20 09:00Z'),
  ('whatsapp', 'w1', 'inbound', 'customer', 1, 1, 'T-1', 'any news?', -0.3, '2026-11-20 11:00Z'),
  ('whatsapp', 'w2', 'inbound', 'customer', 2, 2, 'T-2', 'hello', 0.5, '2026-11-20 10:00Z'),
  ('web', 'b1', 'inbound', 'customer', 3, 3, 'T-3', 'how do I reset my password', 0.1, '2026-11-20 14:00Z'),
  ('web', 'b2', 'inbound', 'customer', 3, 3, 'T-4', 'and my invoice?', 0.0, '2026-11-20 15:00Z'),
  ('web', 'b0', 'inbound', 'customer', 3, 3, 'T-old', 'yesterday', 0.0, '2026-11-19 15:00Z'),
  ('email', 'o1', 'outbound', 'agent', 1, 1, 'T-1', 'a person will follow up', NULL, '2026-11-20 09:01Z');
-- Closed after the messages: a customer message on a quiet-closed ticket reopens it (trigger).
UPDATE tickets SET status = 'closed', closed_reason = 'quiet' WHERE id IN ('T-2', 'T-3', 'T-old');
INSERT INTO escalations (customer_id, conversation_id, ticket_id, inbound_key, channel, reason, priority, status, created_at) VALUES
  (1, 1, 'T-1', 'email:e1', 'email', 'refund', 'normal', 'open', '2026-11-20 09:00Z');
INSERT INTO sla_events (ticket_id, channel, priority, kind, deadline, occurred_at) VALUES
  ('T-2', 'whatsapp', 'normal', 'met', '2026-11-20 10:05Z', '2026-11-20 10:00:10Z'),
  ('T-9', 'whatsapp', 'normal', 'breach', '2026-11-20 12:05Z', '2026-11-20 12:05Z');
INSERT INTO kb_lookups (inbound_key, channel, query, answered, created_at) VALUES
  ('k1', 'web', 'How do I   export my data', false, '2026-11-20 12:00Z'),
  ('k2', 'email', 'how do i export my data', false, '2026-11-20 13:00Z'),
  ('k3', 'web', 'what is your phone number', false, '2026-11-20 13:30Z'),
  ('k4', 'web', 'reset password', true, '2026-11-20 14:00Z');
INSERT INTO dead_letters (source_topic, raw, reason, created_at) VALUES
  ('channel.web.inbound', '\x00', 'invalid JSON', '2026-11-20 16:00Z'),
  ('channel.web.inbound', '\x00', 'invalid JSON', '2026-11-20 16:01Z');
-- uptime: support-flow live 720 of 1440 minutes (two instances overlapping), dispatcher all day
INSERT INTO service_uptime (service, instance, minute)
  SELECT 'support-flow', 'a', m FROM generate_series('2026-11-20 00:00Z'::timestamptz, '2026-11-20 11:59Z', '1 minute') AS m;
INSERT INTO service_uptime (service, instance, minute)
  SELECT 'support-flow', 'b', m FROM generate_series('2026-11-20 06:00Z'::timestamptz, '2026-11-20 11:59Z', '1 minute') AS m;
INSERT INTO service_uptime (service, instance, minute)
  SELECT 'dispatcher', 'a', m FROM generate_series('2026-11-20 00:00Z'::timestamptz, '2026-11-20 23:59Z', '1 minute') AS m;
