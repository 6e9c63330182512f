"""Demo traffic: real data, signatures the channels' own libraries accept, stable customers."""

import base64
import email
import json
import random
from collections import Counter

from twilio.request_validator import RequestValidator

from fte.settings import Settings
from sandbox import demo_traffic as demo


def test_messages_come_from_bitext_and_hint3():
    messages = demo.load_messages()
    sources = Counter(m.source.split(":", 1)[0] for m in messages)
    assert sources["bitext"] > 100 and sources["hint3"] > 100
    assert all(len(m.text) >= 10 for m in messages)
    assert messages == demo.load_messages()  # reproducible for a seed


def test_whatsapp_form_carries_a_signature_twilio_validates():
    settings = Settings(PUBLIC_BASE_URL="https://support.example.com", TWILIO_AUTH_TOKEN="tok-123")
    customer = demo.CUSTOMERS[0]
    path, form, headers = demo.whatsapp_request(settings, customer, "Where is my order?")
    validator = RequestValidator("tok-123")
    url = "https://support.example.com" + path
    assert validator.validate(url, form, headers["X-Twilio-Signature"])
    assert not RequestValidator("other-token").validate(url, form, headers["X-Twilio-Signature"])
    assert form["From"] == f"whatsapp:{customer.phone}" and form["Body"] == "Where is my order?"


def test_web_submission_passes_the_form_rules_and_links_the_phone():
    customer = next(c for c in demo.CUSTOMERS if "whatsapp" in c.channels and "web" in c.channels)
    path, body = demo.web_request(customer, "ok", random.Random(1))
    assert path == "/support/submit"
    assert len(body["name"]) >= 2 and len(body["subject"]) >= 5
    assert body["category"] in demo.WEB_CATEGORIES and body["phone"] == customer.phone


def test_email_and_gmail_push_decode_as_gmail_and_pubsub_send_them():
    settings = Settings(GMAIL_MAILBOX="support@example.com")
    customer = demo.CUSTOMERS[1]
    msg = email.message_from_bytes(demo.email_raw(settings, customer, "I was charged twice for my order"))
    assert customer.email in msg["From"] and msg["To"] == "support@example.com" and msg["Message-ID"]
    assert "I was charged twice" in msg.get_payload()
    push = demo.gmail_push(settings, 4242)
    assert json.loads(base64.b64decode(push["message"]["data"])) == {
        "emailAddress": "support@example.com", "historyId": 4242}


def test_a_stable_set_of_customers_uses_several_channels():
    traffic_like = [demo.CUSTOMERS[i % len(demo.CUSTOMERS)] for i in range(40)]
    assert len({c.email for c in traffic_like}) == len(demo.CUSTOMERS) <= 10
    assert sum(len(c.channels) > 1 for c in demo.CUSTOMERS) >= 5
    assert {ch for c in demo.CUSTOMERS for ch in c.channels} == set(demo.CHANNELS)
