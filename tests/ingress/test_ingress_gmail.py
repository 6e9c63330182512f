"""Gmail push: OIDC tokens signed by a test key, mail read through google-api-python-client
from the local Gmail API server, one event per Gmail message."""

from __future__ import annotations

import base64
from email.message import EmailMessage

import httpx
import pytest

from fte.gmail import build_gmail_service


def deliver(sandbox_url: str, mailbox: str, **fields) -> dict:
    fields.setdefault("from", "Jane Customer <Jane.Customer@Example.com>")
    fields.setdefault("subject", "Order 1234 has not arrived")
    fields.setdefault("text", "Hello,\n\nmy order 1234 has not arrived yet. Can you check?\n")
    response = httpx.post(f"{sandbox_url}/_sandbox/gmail/deliver", json={"mailbox": mailbox, **fields})
    response.raise_for_status()
    return response.json()


@pytest.fixture
def push(client, push_signer, push_envelope, mailbox):
    def send(history_id, *, token: str | None = None, headers: dict | None = None):
        if headers is None:
            headers = {"Authorization": f"Bearer {token or push_signer.token()}"}
        return client.post("/webhooks/gmail", json=push_envelope(mailbox, history_id), headers=headers)
    return send


def test_pushed_mail_is_read_through_the_api_and_published_once(sandbox_url, mailbox, push, inbound):
    first = deliver(sandbox_url, mailbox, text=(
        "Hello,\n\nmy order 1234 has not arrived yet. Can you check?\n\nThanks,\nJane\n-- \n"
        "Jane Customer | ACME Corp | +1 555 0100 100\n"))
    assert push(first["historyId"]).status_code == 204
    [(key, event)] = inbound("email", expect=1)
    assert key == "email:jane.customer@example.com"
    assert event["channel_message_id"] == first["id"]
    assert event["thread_id"] == first["threadId"]
    assert event["subject"] == "Order 1234 has not arrived"
    assert event["sender_name"] == "Jane Customer"
    assert event["body"] == "Hello,\n\nmy order 1234 has not arrived yet. Can you check?\n\nThanks,\nJane"
    assert event["metadata"]["message_id_header"].startswith("<")
    assert event["metadata"]["to"] == [mailbox]


def test_reply_in_thread_keeps_thread_and_references_and_drops_the_quote(sandbox_url, mailbox, push, inbound):
    first = deliver(sandbox_url, mailbox)
    push(first["historyId"])
    service = build_gmail_service_for(sandbox_url, mailbox)
    original = service.users().messages().get(userId="me", id=first["id"], format="full").execute()
    message_id = next(h["value"] for h in original["payload"]["headers"] if h["name"] == "Message-ID")
    second = deliver(sandbox_url, mailbox, subject="Re: Order 1234 has not arrived", in_reply_to=message_id,
                     text="Any news on this?\n\nOn Mon, 1 Jan 2026 at 10:00, Support <s@example.com> wrote:\n"
                          "> We are looking into it.\n> Regards\n")
    assert push(second["historyId"]).status_code == 204
    events = [e for _, e in inbound("email", expect=2)]
    assert len(events) == 2
    reply = events[1]
    assert reply["thread_id"] == first["threadId"]
    assert reply["metadata"]["references"] == message_id
    assert reply["body"] == "Any news on this?"


def build_gmail_service_for(sandbox_url: str, mailbox: str):
    from fte.settings import Settings
    return build_gmail_service(Settings(GMAIL_MAILBOX=mailbox,
                                        GMAIL_DISCOVERY_URL=f"{sandbox_url}/discovery/gmail/v1/rest"))


def test_html_only_multipart_mail_becomes_clean_text(sandbox_url, mailbox, push, inbound):
    msg = EmailMessage()
    msg["From"] = "bob@example.org"
    msg["To"] = mailbox
    msg["Subject"] = "Invoice question"
    msg.set_content("<html><body><p>Where can I <b>download</b> my invoice?</p>"
                    "<div class='gmail_quote'>On Monday you wrote: old text</div></body></html>",
                    subtype="html")
    msg.add_attachment(b"%PDF-1.4", maintype="application", subtype="pdf", filename="order.pdf")
    raw = base64.urlsafe_b64encode(msg.as_bytes()).decode()
    delivered = httpx.post(f"{sandbox_url}/_sandbox/gmail/deliver", json={"mailbox": mailbox, "raw": raw}).json()
    assert push(delivered["historyId"]).status_code == 204
    [(_, event)] = inbound("email", expect=1)
    assert event["body"] == "Where can I download my invoice?"


@pytest.mark.parametrize("forgery", ["missing", "not_bearer", "unknown_key", "wrong_audience",
                                     "wrong_account", "unverified_email", "expired", "wrong_issuer",
                                     "wrong_shared_token"])
def test_forged_or_missing_push_tokens_are_refused(sandbox_url, mailbox, push, push_signer, client,
                                                   push_envelope, inbound, forgery):
    delivered = deliver(sandbox_url, mailbox)
    if forgery == "missing":
        response = push(delivered["historyId"], headers={})
    elif forgery == "not_bearer":
        response = push(delivered["historyId"], headers={"Authorization": f"Basic {push_signer.token()}"})
    elif forgery == "wrong_shared_token":
        response = client.post("/webhooks/gmail", params={"token": "guess"},
                               json=push_envelope(mailbox, delivered["historyId"]))
    else:
        token = {
            "unknown_key": lambda: push_signer.token(signer=push_signer.other_signer),
            "wrong_audience": lambda: push_signer.token(audience="https://elsewhere.example/push"),
            "wrong_account": lambda: push_signer.token(email="attacker@evil.iam.gserviceaccount.com"),
            "unverified_email": lambda: push_signer.token(email_verified=False),
            "expired": lambda: push_signer.token(expires_in=-600),
            "wrong_issuer": lambda: push_signer.token(issuer="https://evil.example"),
        }[forgery]()
        response = push(delivered["historyId"], token=token)
    assert response.status_code == 403
    assert inbound("email", idle_s=1.0) == []


def test_shared_verification_token_is_accepted_for_development(sandbox_url, mailbox, client,
                                                               push_envelope, shared_push_token, inbound):
    delivered = deliver(sandbox_url, mailbox)
    response = client.post("/webhooks/gmail", params={"token": shared_push_token},
                           json=push_envelope(mailbox, delivered["historyId"]))
    assert response.status_code == 204
    assert len(inbound("email", expect=1)) == 1


def test_redelivered_push_and_lost_cursor_give_one_event_per_message(sandbox_url, mailbox, push, inbound,
                                                                     database_url):
    import psycopg

    delivered = deliver(sandbox_url, mailbox)
    assert push(delivered["historyId"]).status_code == 204
    assert push(delivered["historyId"]).status_code == 204  # Pub/Sub redelivery
    with psycopg.connect(database_url) as conn:  # cursor lost: the next push resyncs
        conn.execute("DELETE FROM channel_cursors WHERE account = %s", (mailbox,))
    assert push(delivered["historyId"]).status_code == 204
    events = inbound("email", expect=1)
    assert [e["channel_message_id"] for _, e in events] == [delivered["id"]]


def test_our_own_sent_mail_is_skipped(sandbox_url, mailbox, push, inbound):
    first = deliver(sandbox_url, mailbox)
    push(first["historyId"])
    reply = EmailMessage()
    reply["From"] = mailbox
    reply["To"] = "jane.customer@example.com"
    reply["Subject"] = "Re: Order 1234 has not arrived"
    reply.set_content("It ships tomorrow.")
    service = build_gmail_service_for(sandbox_url, mailbox)
    service.users().messages().send(userId="me", body={
        "raw": base64.urlsafe_b64encode(reply.as_bytes()).decode(), "threadId": first["threadId"]}).execute()
    profile = service.users().getProfile(userId="me").execute()
    assert push(profile["historyId"]).status_code == 204
    events = inbound("email", expect=1)
    assert [e["channel_message_id"] for _, e in events] == [first["id"]]
    sent = httpx.get(f"{sandbox_url}/_sandbox/gmail/sent", params={"mailbox": mailbox}).json()
    assert sent["count"] == 1 and sent["data"][0]["threadId"] == first["threadId"]


def test_expired_history_triggers_a_resync_of_recent_messages(sandbox_url, mailbox, push, inbound):
    first = deliver(sandbox_url, mailbox)
    push(first["historyId"])
    httpx.post(f"{sandbox_url}/_sandbox/gmail/expire-history", params={"mailbox": mailbox})
    second = deliver(sandbox_url, mailbox, subject="Second question", text="And how do I change my address?")
    httpx.post(f"{sandbox_url}/_sandbox/gmail/expire-history", params={"mailbox": mailbox})
    assert push(second["historyId"]).status_code == 204
    events = inbound("email", expect=2)
    assert [e["channel_message_id"] for _, e in events] == [first["id"], second["id"]]


def test_gmail_api_failure_answers_503_and_the_redelivery_publishes(sandbox_url, mailbox, push, inbound):
    delivered = deliver(sandbox_url, mailbox)
    push_first = deliver(sandbox_url, mailbox, subject="warm-up cursor")  # noqa: F841
    httpx.post(f"{sandbox_url}/_sandbox/gmail/faults", json={"status": 503, "count": 50})
    response = push(delivered["historyId"])
    assert response.status_code == 503
    assert response.headers["retry-after"]
    assert inbound("email", idle_s=1.0) == []
    httpx.post(f"{sandbox_url}/_sandbox/gmail/faults", json={"status": 503, "count": 0})
    assert push(delivered["historyId"]).status_code == 204
    assert len(inbound("email", expect=2)) == 2


def test_push_for_another_mailbox_is_acknowledged_and_ignored(client, push_signer, push_envelope, inbound):
    response = client.post("/webhooks/gmail", json=push_envelope("someone-else@example.com", 5000),
                           headers={"Authorization": f"Bearer {push_signer.token()}"})
    assert response.status_code == 204
    assert inbound("email", idle_s=1.0) == []


def test_undecodable_push_data_is_a_422_naming_the_field(client, push_signer):
    response = client.post("/webhooks/gmail", json={"message": {"data": "bm90IGpzb24="}},
                           headers={"Authorization": f"Bearer {push_signer.token()}"})
    assert response.status_code == 422
    assert "message.data" in response.json()["detail"]
