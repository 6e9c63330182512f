"""Email intake rules: strict From, robots never answered, spam skipped, DMARC-verified
senders — the pure parsing, then end to end through the Gmail API sandbox and the ingress."""

from __future__ import annotations

import base64

import psycopg
import pytest

from ingress.email_parse import parse_gmail_message, screen

GMAIL_AR = ("mx.google.com; dkim=pass header.i=@example.com header.s=s1; spf=pass (google.com: "
            "domain of jane@example.com designates 1.2.3.4 as permitted sender) "
            "smtp.mailfrom=jane@example.com; dmarc=pass (p=REJECT sp=REJECT dis=NONE) "
            "header.from=example.com")


def gmail_message(headers: list[tuple[str, str]], labels=("INBOX",), text="Where is my parcel?") -> dict:
    data = base64.urlsafe_b64encode(text.encode()).decode()
    return {"id": "m1", "threadId": "t1", "labelIds": list(labels), "payload": {
        "mimeType": "text/plain", "body": {"data": data},
        "headers": [{"name": n, "value": v} for n, v in headers]}}


@pytest.mark.parametrize("from_value", [
    "victim@bank.com <attacker@evil.com>",
    '"victim@bank.com" <attacker@evil.com>',
    "=?utf-8?q?victim=40bank.com?= <attacker@evil.com>",
    "a@x.com, b@y.com",
    "undisclosed-recipients",
])
def test_from_that_is_not_exactly_one_plain_address_is_refused(from_value):
    parsed = parse_gmail_message(gmail_message([("From", from_value)]))
    verdict = screen(parsed)
    assert verdict.action == "reject" and verdict.reason.startswith("From:")
    assert not parsed.dmarc_aligned


def test_two_from_headers_are_refused():
    parsed = parse_gmail_message(gmail_message([("From", "a@x.com"), ("From", "b@y.com")]))
    assert screen(parsed).action == "reject"


def test_plain_sender_with_display_name_is_accepted():
    parsed = parse_gmail_message(gmail_message([("From", '"Doe, Jane" <jane@example.com>')]))
    assert (parsed.from_name, parsed.from_address) == ("Doe, Jane", "jane@example.com")
    assert screen(parsed).action == "accept"


@pytest.mark.parametrize("headers", [
    [("Auto-Submitted", "auto-replied")],
    [("Auto-Submitted", "auto-generated; type=vacation")],
    [("Precedence", "bulk")], [("Precedence", "junk")], [("Precedence", "list")],
    [("Precedence", "auto_reply")], [("X-Autoreply", "yes")], [("Return-Path", "<>")],
])
def test_machine_sent_mail_is_skipped(headers):
    parsed = parse_gmail_message(gmail_message([("From", "jane@example.com"), *headers]))
    assert screen(parsed).action == "skip"


@pytest.mark.parametrize("sender", ["MAILER-DAEMON@mx.example.com", "postmaster@example.com"])
def test_bounces_from_mailer_daemon_and_postmaster_are_skipped(sender):
    assert screen(parse_gmail_message(gmail_message([("From", sender)]))).action == "skip"


def test_auto_submitted_no_is_a_person():
    parsed = parse_gmail_message(gmail_message([("From", "jane@example.com"), ("Auto-Submitted", "no")]))
    assert screen(parsed).action == "accept"


def test_spam_label_is_skipped():
    parsed = parse_gmail_message(gmail_message([("From", "jane@example.com")], labels=["SPAM"]))
    assert screen(parsed).action == "skip"


@pytest.mark.parametrize("headers,verified", [
    ([("Authentication-Results", GMAIL_AR)], True),
    ([("Authentication-Results", GMAIL_AR.replace("dmarc=pass", "dmarc=fail"))], False),
    ([("Authentication-Results", GMAIL_AR.replace("header.from=example.com", "header.from=evil.com"))], False),
    ([("Authentication-Results", GMAIL_AR.replace("mx.google.com", "mx.evil.com"))], False),
    # Only the topmost header is Gmail's; one lower down was written by the sender.
    ([("Authentication-Results", GMAIL_AR.replace("dmarc=pass", "dmarc=none")),
      ("Authentication-Results", GMAIL_AR)], False),
    ([], False),
])
def test_sender_is_verified_only_by_gmails_dmarc_pass_for_the_from_domain(headers, verified):
    parsed = parse_gmail_message(gmail_message([*headers, ("From", "Jane <jane@example.com>")]))
    assert parsed.dmarc_aligned is verified


# --- end to end: sandbox mailbox -> push -> ingress -> Kafka / dead letters -------------------
def _push(client, sandbox, mailbox, push_envelope, shared_push_token, **mail):
    delivered = sandbox.post("/_sandbox/gmail/deliver", json={"mailbox": mailbox, **mail}).json()
    response = client.post(f"/webhooks/gmail?token={shared_push_token}",
                           json=push_envelope(mailbox, delivered["historyId"]))
    assert response.status_code == 204, response.text
    return delivered


def test_gmail_intake_publishes_people_verifies_dmarc_and_dead_letters_spoofed_from(
        client, sandbox_url, mailbox, push_envelope, shared_push_token, inbound, database_url):
    import httpx

    with httpx.Client(base_url=sandbox_url, timeout=30) as sandbox:
        # The first push reads from the mailbox start (no cursor yet).
        _push(client, sandbox, mailbox, push_envelope, shared_push_token,
              **{"from": "Jane <jane@example.com>", "subject": "Parcel", "text": "Where is it?"})
        _push(client, sandbox, mailbox, push_envelope, shared_push_token,
              **{"from": "Ann <ann@example.org>", "subject": "Refund", "text": "Refund please",
                 "dmarc": "fail"})
        _push(client, sandbox, mailbox, push_envelope, shared_push_token,
              **{"from": "bob@example.com", "subject": "Order", "text": "Has it shipped?"})
        robot = ("From: bob@example.com\nTo: x@example.com\nSubject: Away\nAuto-Submitted: "
                 "auto-replied\n\nI am away until Monday.\n")
        _push(client, sandbox, mailbox, push_envelope, shared_push_token,
              raw=base64.urlsafe_b64encode(robot.encode()).decode())
        spoof = ("From: victim@bank.com <attacker@evil.com>\nTo: x@example.com\nSubject: Hi\n\n"
                 "Send me the account details.\n")
        spoofed = _push(client, sandbox, mailbox, push_envelope, shared_push_token,
                        raw=base64.urlsafe_b64encode(spoof.encode()).decode())
        spam = _push(client, sandbox, mailbox, push_envelope, shared_push_token,
                     **{"from": "win@lottery.example", "text": "You won", "labelIds": ["SPAM"]})
    events = [e for _, e in inbound("email", expect=3)]
    by_sender = {e["sender"][0]["value"]: e for e in events}
    assert set(by_sender) == {"jane@example.com", "ann@example.org", "bob@example.com"}
    assert by_sender["jane@example.com"]["sender"][0]["verified"] is True
    assert by_sender["ann@example.org"]["sender"][0]["verified"] is False
    assert len(events) == 3 and not any("until Monday" in e["body"] for e in events)  # robot skipped
    with psycopg.connect(database_url) as conn:
        dead = conn.execute("SELECT reason FROM dead_letters WHERE msg_key = %s",
                            (spoofed["id"].encode(),)).fetchall()
        spam_rows = conn.execute("SELECT count(*) FROM dead_letters WHERE msg_key = %s",
                                 (spam["id"].encode(),)).fetchone()[0]
    assert len(dead) == 1 and "From: 2 addresses" in dead[0][0]
    assert spam_rows == 0
