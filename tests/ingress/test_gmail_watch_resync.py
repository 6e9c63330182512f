"""Gmail as it behaves in production: users.watch at start and renewed, the fallback poll
when Pub/Sub is silent, dead letters for mail that cannot be read, a paged resync that loses
nothing arriving meanwhile, a push from a mailbox behind the cursor, and a local Gmail
server that keeps its mailbox across restarts. Real Kafka, Postgres and ingress; the local
Gmail API server through google-api-python-client, faults injected in it."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import httpx
import psycopg
import pytest
from psycopg.rows import dict_row
from testkit import wait_for

from fte.settings import Settings
from ingress.app import create_app

from testkit import OPERATOR_KEYS

VIEWER = {"X-API-Key": OPERATOR_KEYS["viewer"]}  # /health/details is for operators

TOPIC = "projects/fte-test/topics/gmail"


def deliver(sandbox_url: str, mailbox: str, **fields) -> dict:
    fields.setdefault("from", "Jane Customer <jane.customer@example.com>")
    fields.setdefault("subject", "Order 1234 has not arrived")
    fields.setdefault("text", "Hello, my order 1234 has not arrived yet.")
    response = httpx.post(f"{sandbox_url}/_sandbox/gmail/deliver", json={"mailbox": mailbox, **fields})
    response.raise_for_status()
    return response.json()


def deliver_raw(sandbox_url: str, mailbox: str, raw: bytes) -> dict:
    return httpx.post(f"{sandbox_url}/_sandbox/gmail/deliver", json={
        "mailbox": mailbox, "raw": base64.urlsafe_b64encode(raw).decode()}).json()


@pytest.fixture
def db(database_url):
    with psycopg.connect(database_url, row_factory=dict_row, autocommit=True) as conn:
        yield conn


@pytest.fixture
def push(client, push_signer, push_envelope, mailbox):
    def send(history_id):
        return client.post("/webhooks/gmail", json=push_envelope(mailbox, history_id),
                           headers={"Authorization": f"Bearer {push_signer.token()}"})
    return send


def ids_of(events) -> list[str]:
    return [e["channel_message_id"] for _, e in events]


def test_watch_is_requested_at_start_renewed_before_expiry_and_shown_in_health(
        ingress_settings, sandbox_url, mailbox, server_thread, db):
    httpx.post(f"{sandbox_url}/_sandbox/gmail/faults", json={"status": 503, "count": 2})  # a bad start
    settings = ingress_settings.model_copy(update={"GMAIL_PUBSUB_TOPIC": TOPIC, "GMAIL_SYNC_CHECK_S": 0.3})
    with server_thread(create_app(settings)) as url:
        watch = wait_for(lambda: httpx.get(f"{sandbox_url}/_sandbox/gmail/watch",
                                           params={"mailbox": mailbox}).json()["watch"], 30, "users.watch")
        assert watch["topicName"] == TOPIC and watch["labelIds"] == ["INBOX"]
        row = wait_for(lambda: db.execute("SELECT * FROM channel_watches WHERE account = %s",
                                          (mailbox,)).fetchone(), 10, "the recorded watch")
        assert timedelta(days=6, hours=23) < row["expires_at"] - datetime.now(UTC) <= timedelta(days=7)
        email = httpx.get(f"{url}/health/details", headers=VIEWER).json()["channels"]["email"]
        assert email["watch_expires_at"] == row["expires_at"].isoformat()
        assert email["intake"] == "ok"
        # A day later the watch is renewed (Gmail would drop it after 7 days).
        db.execute("UPDATE channel_watches SET renewed_at = now() - interval '25 hours', "
                   "expires_at = now() + interval '6 days' WHERE account = %s", (mailbox,))
        renewed = wait_for(lambda: db.execute(
            "SELECT * FROM channel_watches WHERE account = %s AND renewed_at > now() - interval '1 minute'",
            (mailbox,)).fetchone(), 20, "the renewal")
        assert renewed["expires_at"] - datetime.now(UTC) > timedelta(days=6, hours=23)
        # A lapsed watch that cannot be renewed shows as not ok.
        httpx.post(f"{sandbox_url}/_sandbox/gmail/faults", json={"status": 503, "count": 100_000})
        db.execute("UPDATE channel_watches SET renewed_at = now() - interval '8 days', "
                   "expires_at = now() - interval '1 day' WHERE account = %s", (mailbox,))
        assert httpx.get(f"{url}/health/details", headers=VIEWER).json()["channels"]["email"]["intake"] == "watch_expired"
        httpx.post(f"{sandbox_url}/_sandbox/gmail/faults", json={"status": 503, "count": 0})


def test_pubsub_push_and_the_fallback_poll_when_pubsub_is_silent(
        ingress_settings, sandbox_url, mailbox, server_thread, shared_push_token, inbound, db):
    settings = ingress_settings.model_copy(update={
        "GMAIL_PUBSUB_TOPIC": TOPIC, "GMAIL_SYNC_CHECK_S": 0.5, "GMAIL_FALLBACK_POLL_S": 3.0})
    with server_thread(create_app(settings)) as url:
        wait_for(lambda: httpx.get(f"{sandbox_url}/_sandbox/gmail/watch",
                                   params={"mailbox": mailbox}).json()["watch"], 30, "users.watch")
        endpoint = f"{url}/webhooks/gmail?token={shared_push_token}"
        httpx.post(f"{sandbox_url}/_sandbox/gmail/pubsub", json={"push_endpoint": endpoint})
        pushed = deliver(sandbox_url, mailbox, subject="Pushed")
        assert ids_of(inbound("email", expect=1, idle_s=0.5)) == [pushed["id"]]
        assert db.execute("SELECT last_push_at FROM channel_watches WHERE account = %s",
                          (mailbox,)).fetchone()["last_push_at"] is not None
        # The subscription breaks: Gmail changes, nothing is pushed.
        httpx.post(f"{sandbox_url}/_sandbox/gmail/pubsub", json={"push_endpoint": endpoint, "silent": True})
        polled = deliver(sandbox_url, mailbox, subject="Nobody pushed this")
        events = inbound("email", expect=2, idle_s=0.5, timeout_s=60)
        assert ids_of(events) == [pushed["id"], polled["id"]]
        state = db.execute("SELECT * FROM channel_watches WHERE account = %s", (mailbox,)).fetchone()
        assert state["last_poll_at"] is not None
        health = httpx.get(f"{url}/health/details", headers=VIEWER).json()["channels"]["email"]
        assert health["cursor"] == health["mailbox_history_id"] == int(polled["historyId"])
        assert health["last_message_at"] and health["intake"] == "ok"


def test_unparseable_and_refused_mail_become_dead_letters_with_the_gmail_id(
        sandbox_url, mailbox, push, inbound, db):
    no_sender = deliver_raw(sandbox_url, mailbox, b"Subject: no sender\r\n\r\nWho wrote this?\r\n")
    bad_sender = deliver(sandbox_url, mailbox, **{"from": "Bob <bob@nowhere>"})  # no such domain form
    good = deliver(sandbox_url, mailbox)
    assert push(good["historyId"]).status_code == 204
    assert push(good["historyId"]).status_code == 204  # redelivered: nothing twice
    assert ids_of(inbound("email", expect=1)) == [good["id"]]
    dead = db.execute("SELECT convert_from(msg_key, 'UTF8') AS gmail_id, reason, raw FROM dead_letters "
                      "WHERE msg_key IN (%s, %s) ORDER BY id",
                      (no_sender["id"].encode(), bad_sender["id"].encode())).fetchall()
    # Both refused at intake (a From that is not exactly one address, an unusable address).
    assert {d["gmail_id"]: d["reason"].split(":")[0] for d in dead} == {
        no_sender["id"]: "refused", bad_sender["id"]: "refused"}
    assert all(mailbox in bytes(d["raw"]).decode() for d in dead)


def test_resync_after_expired_history_reads_every_message_and_loses_none_arriving_meanwhile(
        sandbox_url, mailbox, push, inbound):
    first = deliver(sandbox_url, mailbox, subject="before")
    assert push(first["historyId"]).status_code == 204
    backlog = [deliver(sandbox_url, mailbox, subject=f"backlog {i}", text=f"question number {i}")
               for i in range(130)]  # more than one messages.list page
    httpx.post(f"{sandbox_url}/_sandbox/gmail/expire-history", params={"mailbox": mailbox})
    # A mail arrives while the resync is listing the mailbox.
    httpx.post(f"{sandbox_url}/_sandbox/gmail/faults", json={"count": 0, "deliver_during_list": 1})
    assert push(backlog[-1]["historyId"]).status_code == 204
    profile_after = httpx.get(f"{sandbox_url}/_sandbox/gmail/watch", params={"mailbox": mailbox}).json()
    assert push(profile_after["historyId"]).status_code == 204  # its own notification
    events = inbound("email", expect=132, idle_s=1.0, timeout_s=60)
    late = [e for _, e in events if e["subject"] == "Arrived during the resync"]
    jane = [e["channel_message_id"] for _, e in events if e not in late]  # one key: in order
    assert jane == [first["id"]] + [b["id"] for b in backlog]
    assert len(late) == 1


def test_push_from_a_mailbox_behind_the_cursor_resyncs_and_says_so(
        sandbox_url, mailbox, push, inbound, client, db):
    first = deliver(sandbox_url, mailbox, subject="first")
    assert push(first["historyId"]).status_code == 204
    # The cursor belongs to another mailbox (e.g. a development server that started afresh).
    db.execute("UPDATE channel_cursors SET cursor = '99999' WHERE channel = 'email' AND account = %s",
               (mailbox,))
    second = deliver(sandbox_url, mailbox, subject="second")
    assert push(second["historyId"]).status_code == 204
    third = deliver(sandbox_url, mailbox, subject="third")
    assert push(third["historyId"]).status_code == 204  # the cursor is this mailbox's again
    assert ids_of(inbound("email", expect=3)) == [first["id"], second["id"], third["id"]]
    email = client.get("/health/details", headers=VIEWER).json()["channels"]["email"]
    assert email["intake"] == "cursor_anomaly" and "behind the stored cursor 99999" in email["note"]
    assert email["cursor"] == int(third["historyId"])
    alert = db.execute("SELECT detail FROM alerts WHERE kind = 'intake_email' AND detail->>'mailbox' = %s",
                       (mailbox,)).fetchone()
    assert alert and alert["detail"]["cursor"] == 99999


def test_local_gmail_server_keeps_its_mailbox_across_restarts(tmp_path, server_thread, mailbox):
    from fte.gmail import build_gmail_service
    from sandbox.app import create_app as sandbox_app

    assert Settings(ENVIRONMENT="development", FTE_DATA_DIR=tmp_path).sandbox_state_dir == tmp_path / "sandbox"
    settings = Settings(GMAIL_MAILBOX=mailbox, SANDBOX_STATE_DIR=tmp_path)
    with server_thread(sandbox_app(settings)) as url:
        delivered = deliver(url, mailbox)
    with server_thread(sandbox_app(settings)) as url:  # restarted
        service = build_gmail_service(settings.model_copy(update={
            "GMAIL_DISCOVERY_URL": f"{url}/discovery/gmail/v1/rest"}))
        assert service.users().getProfile(userId="me").execute()["historyId"] == delivered["historyId"]
        message = service.users().messages().get(userId="me", id=delivered["id"]).execute()
        assert message["threadId"] == delivered["threadId"]
        later = deliver(url, mailbox)
        assert int(later["historyId"]) == int(delivered["historyId"]) + 1
