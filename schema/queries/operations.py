"""SQL of the operations side: ticket auto-close and the day's report figures.

Parameterised statements; functions take a psycopg connection and return plain values.
"""

from __future__ import annotations

from datetime import datetime

import psycopg

# Answered tickets whose last message (either way) is older than the quiet period, with no
# escalation being worked on, close as resolved without a person. A later customer message
# reopens them (trigger messages_reopen_quiet_ticket, migration 070).
CLOSE_QUIET = """
UPDATE tickets t
   SET status = 'closed', closed_reason = 'quiet', closed_at = %(now)s,
       resolved_at = coalesce(t.resolved_at, %(now)s), updated_at = %(now)s
 WHERE t.status = 'answered'
   AND coalesce((SELECT max(m.occurred_at) FROM messages m WHERE m.ticket_id = t.id), t.updated_at)
       < %(now)s - make_interval(secs => %(quiet_s)s)
   AND NOT EXISTS (SELECT 1 FROM escalations e
                    WHERE e.ticket_id = t.id AND e.status IN ('open', 'assigned'))
RETURNING t.id
"""


def close_quiet_tickets(conn: psycopg.Connection, now: datetime, quiet_s: float) -> list[str]:
    with conn.transaction():
        return [r[0] for r in conn.execute(CLOSE_QUIET, {"now": now, "quiet_s": quiet_s}).fetchall()]


# --- the day's report: each query takes %(start)s and %(end)s (a half-open UTC interval) --

VOLUME = """
SELECT channel, count(*) AS messages, count(DISTINCT customer_id) AS customers
FROM messages WHERE direction = 'inbound' AND occurred_at >= %(start)s AND occurred_at < %(end)s
GROUP BY channel ORDER BY channel
"""

FIRST_RESPONSE = """
SELECT channel, count(*) AS tickets, count(first_response_at) AS responded,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM first_response_at - created_at))
           FILTER (WHERE first_response_at IS NOT NULL) AS p50_s,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY extract(epoch FROM first_response_at - created_at))
           FILTER (WHERE first_response_at IS NOT NULL) AS p95_s
FROM tickets WHERE created_at >= %(start)s AND created_at < %(end)s
GROUP BY channel ORDER BY channel
"""

SLA_BREACHES = """
SELECT channel, count(*) FILTER (WHERE kind = 'breach') AS breaches,
       count(*) FILTER (WHERE kind = 'met') AS met
FROM sla_events WHERE occurred_at >= %(start)s AND occurred_at < %(end)s GROUP BY channel
"""

ESCALATION_REASONS = """
SELECT reason, count(*) AS n FROM escalations
WHERE created_at >= %(start)s AND created_at < %(end)s GROUP BY reason ORDER BY n DESC, reason
"""

# Resolved: closed as answered-and-quiet, never reopened, no escalation on the ticket.
RESOLUTION = """
SELECT count(*) AS tickets,
       count(*) FILTER (WHERE t.closed_reason = 'quiet' AND t.reopen_count = 0
                        AND NOT EXISTS (SELECT 1 FROM escalations e WHERE e.ticket_id = t.id)) AS resolved,
       count(*) FILTER (WHERE t.reopen_count > 0) AS reopened,
       count(*) FILTER (WHERE EXISTS (SELECT 1 FROM escalations e WHERE e.ticket_id = t.id)) AS escalated
FROM tickets t WHERE t.created_at >= %(start)s AND t.created_at < %(end)s
"""

CROSS_CHANNEL = """
SELECT count(*) FROM (
    SELECT customer_id FROM messages
    WHERE direction = 'inbound' AND customer_id IS NOT NULL
      AND occurred_at >= %(start)s AND occurred_at < %(end)s
    GROUP BY customer_id HAVING count(DISTINCT channel) > 1) AS c
"""

SENTIMENT_BY_HOUR = """
SELECT date_trunc('hour', occurred_at) AS hour, avg(sentiment) AS mean, count(*) AS n
FROM messages WHERE direction = 'inbound' AND sentiment IS NOT NULL
  AND occurred_at >= %(start)s AND occurred_at < %(end)s
GROUP BY 1 ORDER BY 1
"""

# Questions the knowledge base could not answer, grouped by their opening words.
UNANSWERED = """
SELECT left(lower(regexp_replace(query, '\\s+', ' ', 'g')), 90) AS question, count(*) AS n
FROM kb_lookups WHERE NOT answered AND created_at >= %(start)s AND created_at < %(end)s
GROUP BY 1 ORDER BY n DESC, question LIMIT %(limit)s
"""

DEAD_LETTERS = """
SELECT source_topic, left(reason, 120) AS reason, count(*) AS n,
       count(*) FILTER (WHERE replayed_at IS NOT NULL) AS replayed
FROM dead_letters WHERE created_at >= %(start)s AND created_at < %(end)s
GROUP BY 1, 2 ORDER BY n DESC LIMIT 20
"""

# Minutes in which some instance of the service was live, over the minutes of the period
# that have passed (a report for today counts up to now).
UPTIME = """
SELECT service, count(DISTINCT minute) AS live_minutes
FROM service_uptime WHERE minute >= %(start)s AND minute < %(end)s
GROUP BY service ORDER BY service
"""


def report_rows(conn: psycopg.Connection, start: datetime, end: datetime, limit: int = 10) -> dict:
    """Every figure of the day's report, as lists of tuples keyed by section."""
    from psycopg.rows import tuple_row

    params = {"start": start, "end": end, "limit": limit}

    def run(sql: str) -> list[tuple]:
        # Tuples whatever the connection's row factory (the console's pool gives dicts).
        with conn.cursor(row_factory=tuple_row) as cur:
            return cur.execute(sql, params).fetchall()

    return {
        "volume": run(VOLUME), "first_response": run(FIRST_RESPONSE), "sla": run(SLA_BREACHES),
        "escalation_reasons": run(ESCALATION_REASONS), "resolution": run(RESOLUTION)[0],
        "cross_channel": run(CROSS_CHANNEL)[0][0], "sentiment": run(SENTIMENT_BY_HOUR),
        "unanswered": run(UNANSWERED), "dead_letters": run(DEAD_LETTERS), "uptime": run(UPTIME),
    }
