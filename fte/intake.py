"""Intake health per channel: is mail/messages actually arriving, or is nothing due?

`assess` is pure (a snapshot of Postgres in, per-channel verdicts out). The ingress's
/health merges the verdicts into its channel detail and raises an `intake_<channel>` alert
while a channel is not ok; the console's System page shows the same verdicts.

"ok" means: messages are arriving, or nothing is due. Email is due when the mailbox's
historyId is ahead of the cursor; it is "stalled" when that has been so for longer than
twice the fallback poll interval (neither push nor poll caught up), "watch_expired" when the
watch lapsed, "cursor_anomaly" when a push came from a mailbox behind the cursor in the last
hour. WhatsApp is "relay_stalled" when an accepted webhook waits for Kafka over a minute.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from schema.queries import channels as q

RELAY_STALL = timedelta(minutes=1)
ANOMALY_SHOWN = timedelta(hours=1)


@dataclass(frozen=True)
class Snapshot:
    now: datetime
    last_message: dict[str, datetime | None]  # channel -> last inbound accepted
    email_cursor: int | None
    email_cursor_at: datetime | None
    watch: dict | None  # channel_watches row
    whatsapp_inbox: dict  # last_webhook_at, pending, oldest_pending_at


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def assess(snap: Snapshot, *, watch_expected: bool, fallback_poll_s: float) -> dict[str, dict]:
    now, watch = snap.now, snap.watch or {}
    mailbox_id = watch.get("mailbox_history_id")
    behind = (mailbox_id is not None and snap.email_cursor is not None and mailbox_id > snap.email_cursor)
    last_sync = max([t for t in (watch.get("last_push_at"), watch.get("last_poll_at"),
                                 snap.email_cursor_at) if t], default=None)
    email_state = "ok"
    if watch_expected and (watch.get("expires_at") is None or watch["expires_at"] <= now):
        email_state = "watch_expired"
    if behind and (last_sync is None or now - last_sync > timedelta(seconds=fallback_poll_s) * 2):
        email_state = "stalled"
    if watch.get("note_at") and now - watch["note_at"] < ANOMALY_SHOWN:
        email_state = "cursor_anomaly"
    inbox = snap.whatsapp_inbox
    oldest = inbox.get("oldest_pending_at")
    return {
        "email": {
            "intake": email_state,
            "last_message_at": _iso(snap.last_message.get("email")),
            "last_push_at": _iso(watch.get("last_push_at")),
            "last_poll_at": _iso(watch.get("last_poll_at")),
            "cursor": snap.email_cursor,
            "mailbox_history_id": mailbox_id,
            "watch_expires_at": _iso(watch.get("expires_at")),
            "watch_renewed_at": _iso(watch.get("renewed_at")),
            "note": watch.get("note") if email_state == "cursor_anomaly" else None,
        },
        "whatsapp": {
            "intake": "relay_stalled" if oldest and now - oldest > RELAY_STALL else "ok",
            "last_message_at": _iso(snap.last_message.get("whatsapp")),
            "last_webhook_at": _iso(inbox.get("last_webhook_at")),
            "relay_pending": int(inbox.get("pending") or 0),
        },
        "web": {
            "intake": "ok",
            "last_message_at": _iso(snap.last_message.get("web")),
            "last_webhook_at": _iso(snap.last_message.get("web")),
        },
    }


def read_intake_sync(conn, settings) -> dict[str, dict]:
    """The verdicts from a (dict-row) psycopg connection: the console's reader."""
    def one(sql, params=None):
        return conn.execute(sql, params).fetchone()
    now = one("SELECT now() AS now")["now"]
    last = {r["channel"]: r["last_message_at"] for r in conn.execute(q.INTAKE_LAST_MESSAGES).fetchall()}
    last["web"] = one(q.INTAKE_LAST_WEB)["at"]
    cursor = one(q.CURSOR, {"account": settings.GMAIL_MAILBOX})
    snap = Snapshot(now=now, last_message=last, email_cursor=int(cursor["cursor"]) if cursor else None,
                    email_cursor_at=cursor["updated_at"] if cursor else None,
                    watch=one(q.WATCH_STATE, {"account": settings.GMAIL_MAILBOX}),
                    whatsapp_inbox=dict(one(q.INTAKE_WHATSAPP_INBOX) or {}))
    return assess(snap, watch_expected=bool(settings.GMAIL_PUBSUB_TOPIC),
                  fallback_poll_s=settings.GMAIL_FALLBACK_POLL_S)
