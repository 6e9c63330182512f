"""The System page's intake per channel: a Gmail mailbox ahead of the cursor with no push or
poll catching up shows as stalled, with the cursor, the mailbox's history id and the watch."""

from console_apptest import open_page, texts

from fte.settings import Settings


def test_system_page_shows_a_stalled_mailbox_and_the_watch(console_env, db):
    mailbox = Settings().GMAIL_MAILBOX
    db.execute("INSERT INTO channel_cursors (channel, account, cursor, updated_at) "
               "VALUES ('email', %s, '1071', now() - interval '2 hours')", (mailbox,))
    db.execute("INSERT INTO channel_watches (channel, account, expires_at, renewed_at, last_push_at, "
               "mailbox_history_id) VALUES ('email', %s, now() + interval '6 days', now(), "
               "now() - interval '2 hours', 1090)", (mailbox,))
    at = open_page("system")
    metrics = {m.label: m for m in at.metric}
    assert metrics["email intake"].value == "stalled"
    assert metrics["whatsapp intake"].value == "ok" and metrics["web intake"].value == "ok"
    shown = texts(at)
    assert "cursor 1071 · mailbox history id 1090" in shown and "watch expires 20" in shown
