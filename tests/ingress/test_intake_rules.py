"""The pure rules behind the Gmail watch and the intake verdicts (no I/O)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from fte.intake import Snapshot, assess
from ingress.gmail_watch import poll_due, watch_due

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
DAY = 24 * 3600.0


def test_watch_is_due_when_never_made_a_day_old_or_close_to_expiry():
    assert watch_due(None, NOW, DAY)
    fresh = {"renewed_at": NOW - timedelta(hours=2), "expires_at": NOW + timedelta(days=6, hours=22)}
    assert not watch_due(fresh, NOW, DAY)
    assert watch_due({**fresh, "renewed_at": NOW - timedelta(hours=25)}, NOW, DAY)
    assert watch_due({**fresh, "expires_at": NOW + timedelta(hours=20)}, NOW, DAY)


def test_poll_only_when_the_mailbox_is_ahead_and_no_push_came_lately():
    pushed = {"last_push_at": NOW - timedelta(seconds=10)}
    assert not poll_due(pushed, NOW, cursor=1005, mailbox_id=1005, fallback_s=300)
    assert not poll_due(pushed, NOW, cursor=1000, mailbox_id=1005, fallback_s=300)
    assert poll_due({"last_push_at": NOW - timedelta(minutes=6)}, NOW, 1000, 1005, 300)
    assert poll_due(None, NOW, 1000, 1005, 300, cursor_at=NOW - timedelta(minutes=6))
    assert not poll_due(None, NOW, 1000, 1005, 300, cursor_at=NOW - timedelta(seconds=30))
    assert not poll_due(None, NOW, None, 1000, 300)  # no cursor: initialised, not polled


def snap(**kw) -> Snapshot:
    base = dict(now=NOW, last_message={"email": NOW - timedelta(minutes=1)}, email_cursor=1005,
                email_cursor_at=NOW - timedelta(minutes=1),
                watch={"mailbox_history_id": 1005, "expires_at": NOW + timedelta(days=6),
                       "renewed_at": NOW - timedelta(hours=1), "last_push_at": NOW - timedelta(minutes=1)},
                whatsapp_inbox={"pending": 0})
    return Snapshot(**{**base, **kw})


def test_ok_means_arriving_or_nothing_due():
    verdict = assess(snap(), watch_expected=True, fallback_poll_s=300)
    assert verdict["email"]["intake"] == "ok" and verdict["whatsapp"]["intake"] == "ok"
    quiet = snap(email_cursor_at=NOW - timedelta(days=3),
                 watch={"mailbox_history_id": 1005, "expires_at": NOW + timedelta(days=6),
                        "renewed_at": NOW - timedelta(hours=1), "last_push_at": NOW - timedelta(days=3)})
    assert assess(quiet, watch_expected=True, fallback_poll_s=300)["email"]["intake"] == "ok"


def test_mail_due_but_not_arriving_is_stalled_and_a_lapsed_watch_is_reported():
    stalled = snap(email_cursor_at=NOW - timedelta(hours=1),
                   watch={"mailbox_history_id": 1071, "expires_at": NOW + timedelta(days=6),
                          "renewed_at": NOW - timedelta(hours=1), "last_push_at": NOW - timedelta(hours=1)})
    assert assess(stalled, watch_expected=True, fallback_poll_s=300)["email"]["intake"] == "stalled"
    lapsed = snap(watch={"mailbox_history_id": 1005, "expires_at": NOW - timedelta(minutes=1),
                         "renewed_at": NOW - timedelta(days=8)})
    assert assess(lapsed, watch_expected=True, fallback_poll_s=300)["email"]["intake"] == "watch_expired"
    assert assess(lapsed, watch_expected=False, fallback_poll_s=300)["email"]["intake"] == "ok"


def test_anomaly_and_a_stalled_relay_are_reported():
    noted = snap(watch={"mailbox_history_id": 1005, "note": "behind", "note_at": NOW - timedelta(minutes=5),
                        "expires_at": NOW + timedelta(days=6), "renewed_at": NOW})
    verdict = assess(noted, watch_expected=True, fallback_poll_s=300)["email"]
    assert verdict["intake"] == "cursor_anomaly" and verdict["note"] == "behind"
    waiting = snap(whatsapp_inbox={"pending": 3, "oldest_pending_at": NOW - timedelta(minutes=5)})
    whatsapp = assess(waiting, watch_expected=True, fallback_poll_s=300)["whatsapp"]
    assert whatsapp["intake"] == "relay_stalled" and whatsapp["relay_pending"] == 3
