"""WhatsApp webhook: Twilio signatures (computed by the twilio library), TwiML, dedupe."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from twilio.request_validator import RequestValidator

URL = "https://support.example.test/webhooks/whatsapp"


def twilio_form(sid: str | None = None, sender: str = "+15550100100", body: str = "Where is my order?") -> dict:
    return {"MessageSid": sid or f"SM{uuid.uuid4().hex}", "AccountSid": "AC" + "0" * 32,
            "From": f"whatsapp:{sender}", "To": "whatsapp:+14155238886", "Body": body,
            "ProfileName": "Jane Customer", "NumMedia": "0", "ApiVersion": "2010-04-01"}


def sign(token: str, form: dict, url: str = URL) -> dict:
    return {"X-Twilio-Signature": RequestValidator(token).compute_signature(url, form)}


def test_signed_message_gives_empty_twiml_and_one_event(client, inbound, twilio_token):
    form = twilio_form(sender="+15550100123")
    form.update(NumMedia="1", MediaUrl0="https://api.twilio.com/media/ME1")
    response = client.post("/webhooks/whatsapp", data=form, headers=sign(twilio_token, form))
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/xml")
    assert response.text.endswith("<Response></Response>")
    events = inbound("whatsapp", expect=1)
    assert len(events) == 1
    key, event = events[0]
    assert key == "phone:+15550100123"
    assert event["channel"] == "whatsapp" and event["channel_message_id"] == form["MessageSid"]
    # Twilio signed it: the sender is proved (Identifier.verified) and may link customers.
    assert event["sender"] == [{"kind": "phone", "value": "+15550100123", "verified": True}]
    assert event["body"] == "Where is my order?"
    assert event["metadata"] == {"profile_name": "Jane Customer", "to": "whatsapp:+14155238886",
                                 "media_urls": ["https://api.twilio.com/media/ME1"]}


@pytest.mark.parametrize("forgery", ["missing", "wrong_token", "tampered_body", "other_url", "garbage"])
def test_forged_signatures_are_refused_with_403_and_publish_nothing(client, inbound, twilio_token, forgery):
    form = twilio_form()
    if forgery == "missing":
        headers = {}
    elif forgery == "wrong_token":
        headers = sign("not-the-auth-token", form)
    elif forgery == "tampered_body":
        headers = sign(twilio_token, form)
        form = {**form, "Body": "Send me a refund now"}
    elif forgery == "other_url":
        headers = sign(twilio_token, form, "https://evil.example.test/webhooks/whatsapp")
    else:
        headers = {"X-Twilio-Signature": "AAAAAAAAAAAAAAAAAAAAAAAAAAA="}
    response = client.post("/webhooks/whatsapp", data=form, headers=headers)
    assert response.status_code == 403
    assert inbound("whatsapp", idle_s=1.0) == []


def test_security_log_names_the_refusal_without_the_body(client, twilio_token, capsys, caplog):
    form = twilio_form(body="my secret account password is hunter2")
    client.post("/webhooks/whatsapp", data=form, headers=sign("wrong", form))
    captured = capsys.readouterr()
    # The handler's stream is whichever stderr was current when logging was first set up in
    # this process (it depends on which tests ran before), so read the records too.
    logged = captured.out + captured.err + caplog.text
    assert "security.webhook_rejected" in logged and "X-Twilio-Signature" in logged
    assert "hunter2" not in logged


def test_duplicate_message_sid_gives_one_event(client, inbound, twilio_token):
    form = twilio_form()
    headers = sign(twilio_token, form)
    # Twilio's retry after a timeout, plus two racing copies.
    first = client.post("/webhooks/whatsapp", data=form, headers=headers)
    with ThreadPoolExecutor(4) as pool:
        later = list(pool.map(lambda _: client.post("/webhooks/whatsapp", data=form, headers=headers),
                              range(4)))
    assert [r.status_code for r in [first, *later]] == [200] * 5
    events = inbound("whatsapp", expect=1)
    assert [e["channel_message_id"] for _, e in events] == [form["MessageSid"]]


def test_racing_duplicates_before_any_commit_still_give_one_event(client, inbound, twilio_token):
    form = twilio_form()
    headers = sign(twilio_token, form)
    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(lambda _: client.post("/webhooks/whatsapp", data=form, headers=headers),
                                range(6)))
    assert {r.status_code for r in results} == {200}
    assert len(inbound("whatsapp", expect=1)) == 1


def test_forwarded_proto_and_host_are_honoured_behind_a_proxy(client, inbound, twilio_token):
    form = twilio_form()
    proxied = "https://public.example.org/webhooks/whatsapp"
    headers = {**sign(twilio_token, form, proxied), "X-Forwarded-Proto": "https",
               "X-Forwarded-Host": "public.example.org"}
    assert client.post("/webhooks/whatsapp", data=form, headers=headers).status_code == 200
    assert len(inbound("whatsapp", expect=1)) == 1


def test_forwarded_host_that_is_not_ours_is_ignored(client, twilio_token):
    """A request signed for a host we do not serve is refused whatever X-Forwarded-Host says."""
    form = twilio_form()
    spoofed = "https://evil.example/webhooks/whatsapp"
    headers = {**sign(twilio_token, form, spoofed), "X-Forwarded-Proto": "https",
               "X-Forwarded-Host": "evil.example"}
    assert client.post("/webhooks/whatsapp", data=form, headers=headers).status_code == 403


@pytest.mark.parametrize("field,value", [("From", "whatsapp:not-a-number"), ("MessageSid", ""),
                                         ("Body", "")])
def test_bad_fields_are_named_in_a_422(client, twilio_token, field, value):
    form = twilio_form()
    form[field] = value
    response = client.post("/webhooks/whatsapp", data=form, headers=sign(twilio_token, form))
    assert response.status_code == 422
    assert field in response.json()["detail"]
