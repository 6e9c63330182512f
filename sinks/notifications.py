"""Sending notifications once: a row in `notifications` is claimed before anything is sent.

Email goes through the reply outbox (kind 'notification', channel 'email'): the claim and the
outbox row commit together, and the dispatcher's Gmail sender delivers it exactly as it
delivers replies. Slack gets a POST to its incoming webhook after the claim commits; a
failure marks the row 'failed' and `retry_failed` sends it again later.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import httpx
import psycopg
from psycopg.types.json import Jsonb

from flows.notify_rules import Notice
from fte import observability
from fte.logs import get_logger
from sinks.outbox import NOTIFY_CHANNEL

log = get_logger(__name__)

CLAIM = """
INSERT INTO notifications (dedupe_key, source, target, recipient, priority, subject, body,
                           status, attempts, event_at)
VALUES (%(dedupe_key)s, %(source)s, %(target)s, %(recipient)s, %(priority)s, %(subject)s,
        %(body)s, %(status)s, 1, %(event_at)s)
ON CONFLICT (dedupe_key) DO NOTHING
RETURNING dedupe_key
"""

OUTBOX_EMAIL = """
INSERT INTO reply_outbox (inbound_key, kind, channel, recipient, subject, body, payload)
VALUES (%(key)s, 'notification', 'email', %(recipient)s, %(subject)s, %(body)s, %(payload)s)
ON CONFLICT (inbound_key) DO NOTHING
"""

RETRYABLE = """
SELECT dedupe_key, source, target, recipient, priority, subject, event_at FROM notifications
WHERE target = 'slack' AND attempts < %(max_attempts)s
  AND (status = 'failed' OR (status = 'sending' AND created_at < now() - interval '2 minutes'))
ORDER BY created_at LIMIT 50
"""


def enqueue_email(conn: psycopg.Connection, *, key: str, recipient: str, subject: str, body: str,
                  html: str | None = None) -> None:
    """An email to staff through the reply outbox, once per key (in the caller's transaction)."""
    conn.execute(OUTBOX_EMAIL, {"key": key, "recipient": recipient, "subject": subject, "body": body,
                                "payload": Jsonb({"parts": [body], "html": html})})
    conn.execute("SELECT pg_notify(%s, 'email')", (NOTIFY_CHANNEL,))


def post_slack(url: str, text: str, timeout_s: float = 10.0) -> None:
    """Slack-compatible incoming webhook: JSON {"text": ...}, 2xx means accepted."""
    response = httpx.post(url, json={"text": text}, timeout=timeout_s)
    response.raise_for_status()


class Notifier:
    def __init__(self, database_url: str, slack_url: str | None,
                 post: Callable[[str, str], None] = post_slack):
        self.database_url = database_url
        self.slack_url = slack_url
        self.post = post

    def send(self, conn: psycopg.Connection, notice: Notice) -> bool:
        """Record and send one notice; False when it was already recorded (a replay)."""
        if notice.target == "slack" and not self.slack_url:
            return False
        row = {"dedupe_key": notice.dedupe_key, "source": notice.source, "target": notice.target,
               "recipient": notice.recipient, "priority": notice.priority,
               "subject": notice.subject[:300], "body": notice.text, "event_at": notice.event_at,
               "status": "sent" if notice.target == "email" else "sending"}
        with conn.transaction():
            if conn.execute(CLAIM, row).fetchone() is None:
                observability.NOTIFICATIONS.labels(notice.target, "duplicate").inc()
                return False
            if notice.target == "email":
                enqueue_email(conn, key=f"notify:{notice.dedupe_key}", recipient=notice.recipient,
                              subject=notice.subject, body=notice.text)
                conn.execute("UPDATE notifications SET sent_at = now() WHERE dedupe_key = %s",
                             (notice.dedupe_key,))
        if notice.target == "slack":
            self._post(conn, notice.dedupe_key, notice.text)
        else:
            self._sent(notice)
        return True

    def _post(self, conn: psycopg.Connection, key: str, text: str) -> None:
        try:
            self.post(self.slack_url, text)
        except Exception as exc:  # noqa: BLE001 -- any failure: recorded, retried by retry_failed
            conn.execute("UPDATE notifications SET status = 'failed', last_error = %s WHERE dedupe_key = %s",
                         (f"{type(exc).__name__}: {exc}"[:500], key))
            observability.NOTIFICATIONS.labels("slack", "failed").inc()
            log.warning("notify.slack_failed", key=key, error=str(exc))
            return
        row = conn.execute("UPDATE notifications SET status = 'sent', sent_at = now(), last_error = NULL "
                           "WHERE dedupe_key = %s RETURNING source, event_at", (key,)).fetchone()
        observability.NOTIFICATIONS.labels("slack", "sent").inc()
        if row:
            observability.NOTIFY_DELAY.labels(row[0]).observe(
                max(0.0, (datetime.now(UTC) - row[1]).total_seconds()))

    def _sent(self, notice: Notice) -> None:
        observability.NOTIFICATIONS.labels(notice.target, "sent").inc()
        observability.NOTIFY_DELAY.labels(notice.source).observe(
            max(0.0, (datetime.now(UTC) - notice.event_at).total_seconds()))

    def retry_failed(self, conn: psycopg.Connection, max_attempts: int = 10) -> int:
        """Send again Slack notices that failed (or were left mid-send by a crash)."""
        rows = conn.execute(RETRYABLE, {"max_attempts": max_attempts}).fetchall()
        for key, *_ in rows:
            text = conn.execute("UPDATE notifications SET attempts = attempts + 1, status = 'sending' "
                                "WHERE dedupe_key = %s RETURNING body", (key,)).fetchone()
            if text:
                self._post(conn, key, text[0])
        return len(rows)
