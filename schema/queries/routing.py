"""SQL of the learned routing: the leads' labels (migration 010) and the KB questions that
most often got no confident answer."""

RECENT_HANDLED = """
SELECT m.channel || ':' || m.channel_message_id AS inbound_key, m.occurred_at, m.channel,
       m.handled_as, coalesce(m.subject || E'\\n', '') || m.body AS text,
       l.top_slug AS article, l.score, e.reason AS escalation_reason, r.verdict AS labelled
  FROM messages m
  LEFT JOIN kb_lookups l ON l.inbound_key = m.channel || ':' || m.channel_message_id
  LEFT JOIN escalations e ON e.inbound_key = m.channel || ':' || m.channel_message_id
  LEFT JOIN routing_labels r ON r.inbound_key = m.channel || ':' || m.channel_message_id
 WHERE m.direction = 'inbound' AND m.handled_as IN ('answered', 'clarified', 'escalated')
   AND m.occurred_at >= %(since)s
 ORDER BY m.occurred_at DESC
 LIMIT %(limit)s
"""

UPSERT_LABEL = """
INSERT INTO routing_labels (inbound_key, text, verdict, label, slug, handled_as, labelled_by)
VALUES (%(inbound_key)s, %(text)s, %(verdict)s, %(label)s, %(slug)s, %(handled_as)s, %(user)s)
ON CONFLICT (inbound_key) DO UPDATE SET
    verdict = EXCLUDED.verdict, label = EXCLUDED.label, slug = EXCLUDED.slug,
    labelled_by = EXCLUDED.labelled_by, created_at = now()
RETURNING id
"""

LABELS = """
SELECT id, created_at, verdict, label, slug, handled_as, labelled_by, text
  FROM routing_labels ORDER BY created_at DESC LIMIT %(limit)s
"""

ARTICLE_INTENTS = """
SELECT DISTINCT ON (slug) slug, title, intents, escalate FROM knowledge_base ORDER BY slug, chunk_index
"""

# Questions (case and spacing folded) that most often got no confident answer.
KB_NOT_CONFIDENT = """
SELECT lower(regexp_replace(query, '\\s+', ' ', 'g')) AS question, count(*) AS times,
       mode() WITHIN GROUP (ORDER BY top_slug) AS nearest, round(avg(score)::numeric, 2) AS mean_score,
       max(created_at) AS last_seen
  FROM kb_lookups
 WHERE NOT answered AND created_at >= %(since)s
 GROUP BY 1
 ORDER BY times DESC, last_seen DESC
 LIMIT %(limit)s
"""
