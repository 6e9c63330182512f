"""The local Gmail API server, driven through google-api-python-client like production code."""

from __future__ import annotations

import base64
from email import message_from_bytes, policy
from email.message import EmailMessage

import httpx
import pytest
from googleapiclient.errors import HttpError
from testkit import ServerThread

from fte.gmail import build_gmail_service
from fte.settings import Settings
from sandbox.app import create_app

MAILBOX = "support@shop.example"


@pytest.fixture
def sandbox():
    with ServerThread(create_app(Settings(GMAIL_MAILBOX=MAILBOX)), lifespan="auto") as url:
        service = build_gmail_service(Settings(GMAIL_MAILBOX=MAILBOX,
                                               GMAIL_DISCOVERY_URL=f"{url}/discovery/gmail/v1/rest"))
        yield url, service


def deliver(url: str, **fields) -> dict:
    response = httpx.post(f"{url}/_sandbox/gmail/deliver", json={
        "from": "Ann <ann@example.com>", "subject": "Hello", "text": "First line\n", **fields})
    response.raise_for_status()
    return response.json()


def test_delivered_mail_shows_in_history_list_and_get(sandbox):
    url, gmail = sandbox
    start = int(gmail.users().getProfile(userId="me").execute()["historyId"])
    first = deliver(url)
    second = deliver(url, subject="Second", html="<p>hi</p>")
    history = gmail.users().history().list(userId="me", startHistoryId=start,
                                           historyTypes=["messageAdded"]).execute()
    added = [a["message"]["id"] for h in history["history"] for a in h["messagesAdded"]]
    assert added == [first["id"], second["id"]]
    assert history["historyId"] == second["historyId"]
    full = gmail.users().messages().get(userId="me", id=second["id"], format="full").execute()
    assert full["payload"]["mimeType"] == "multipart/alternative"
    assert [p["mimeType"] for p in full["payload"]["parts"]] == ["text/plain", "text/html"]
    raw = gmail.users().messages().get(userId="me", id=first["id"], format="raw").execute()["raw"]
    parsed = message_from_bytes(base64.urlsafe_b64decode(raw + "=="), policy=policy.default)
    assert parsed["Subject"] == "Hello" and parsed.get_content().strip() == "First line"
    listed = gmail.users().messages().list(userId="me", labelIds=["INBOX"], maxResults=1).execute()
    assert listed["messages"][0]["id"] == second["id"] and "nextPageToken" in listed


def test_send_records_the_mail_in_the_thread_and_lists_it(sandbox):
    url, gmail = sandbox
    inbound = deliver(url)
    reply = EmailMessage()
    reply["To"] = "ann@example.com"
    reply["From"] = MAILBOX
    reply["Subject"] = "Re: Hello"
    reply["Message-ID"] = "<reply-1@shop.example>"
    reply.set_content("Answer")
    sent = gmail.users().messages().send(userId="me", body={
        "raw": base64.urlsafe_b64encode(reply.as_bytes()).decode(), "threadId": inbound["threadId"]}).execute()
    assert sent["threadId"] == inbound["threadId"] and sent["labelIds"] == ["SENT"]
    by_id = gmail.users().messages().list(userId="me", labelIds=["SENT"],
                                          q="rfc822msgid:reply-1@shop.example").execute()
    assert [m["id"] for m in by_id["messages"]] == [sent["id"]]
    listing = httpx.get(f"{url}/_sandbox/gmail/sent").json()
    assert listing["count"] == 1
    assert listing["data"][0]["subject"] == "Re: Hello" and listing["data"][0]["text"].strip() == "Answer"


def test_watch_expired_history_and_injected_faults(sandbox):
    url, gmail = sandbox
    watch = gmail.users().watch(userId="me", body={"topicName": "projects/p/topics/gmail"}).execute()
    deliver(url)
    httpx.post(f"{url}/_sandbox/gmail/expire-history")
    with pytest.raises(HttpError) as gone:
        gmail.users().history().list(userId="me", startHistoryId=watch["historyId"]).execute()
    assert gone.value.resp.status == 404
    httpx.post(f"{url}/_sandbox/gmail/faults", json={"status": 503, "count": 1})
    with pytest.raises(HttpError) as fault:
        gmail.users().getProfile(userId="me").execute()
    assert fault.value.resp.status == 503
    assert gmail.users().getProfile(userId="me").execute()["emailAddress"] == MAILBOX
    # The client's own retries ride over a short outage.
    httpx.post(f"{url}/_sandbox/gmail/faults", json={"status": 503, "count": 1})
    assert gmail.users().getProfile(userId="me").execute(num_retries=2)["emailAddress"] == MAILBOX


def test_a_burst_of_mail_is_saved_once_it_settles(tmp_path):
    """The mailbox file is rewritten at most every SAVE_EVERY_S, and the last of a burst
    still reaches it: a restarted server has every message."""
    import time

    from sandbox.gmail import GmailSandbox

    state = tmp_path / "gmail.json"
    box = GmailSandbox(state)
    mailbox = box.mailbox(MAILBOX)
    for i in range(40):
        msg = EmailMessage()
        msg["From"], msg["To"], msg["Subject"] = "a@example.com", MAILBOX, f"burst {i}"
        msg.set_content("hello")
        box.add(mailbox, msg.as_bytes(), ["INBOX"])
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        restarted = GmailSandbox(state)
        if len(restarted.mailbox(MAILBOX).messages) == 40:
            break
        time.sleep(0.2)
    assert len(restarted.mailbox(MAILBOX).messages) == 40
