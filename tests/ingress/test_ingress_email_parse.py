"""Email bodies: MIME walking, base64url, HTML to text, quotes and signatures stripped."""

from __future__ import annotations

import base64

import pytest

from ingress.email_parse import html_to_text, parse_gmail_message, strip_quotes_and_signature


def part(mime: str, text: str, **extra) -> dict:
    data = base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")
    return {"mimeType": mime, "body": {"data": data}, "headers": [], **extra}


def message(payload: dict, **headers) -> dict:
    payload = {**payload, "headers": [{"name": k.replace("_", "-"), "value": v} for k, v in headers.items()]}
    return {"id": "m1", "threadId": "t1", "labelIds": ["INBOX"], "internalDate": "1767225600000",
            "payload": payload}


@pytest.mark.parametrize("text,expected", [
    ("Thanks!\n\nOn Tue, 2 Jan 2026 at 09:12, Shop Support <help@shop.example> wrote:\n> old answer",
     "Thanks!"),
    ("Still broken.\n-----Original Message-----\nFrom: support\nSent: Monday\nold", "Still broken."),
    ("Yes please.\n________________________________\nFrom: Shop\nSent: Tuesday\nSubject: x", "Yes please."),
    ("Hello\n> quoted line\nmy reply", "Hello\nmy reply"),
    ("Where is it?\n\n-- \nJane Doe\nCEO, Example Ltd", "Where is it?"),
    ("Where is it?\n\nSent from my iPhone", "Where is it?"),
    ("From: the start, this product was great.\nThanks", "From: the start, this product was great.\nThanks"),
])
def test_quotes_and_signatures_are_stripped(text, expected):
    assert strip_quotes_and_signature(text) == expected


def test_html_to_text_drops_scripts_and_quoted_blocks():
    html = ("<html><head><style>p{}</style></head><body><p>Hi&nbsp;there,</p><p>My <b>order</b>"
            "<br>is late.</p><script>alert(1)</script><blockquote>old mail</blockquote></body></html>")
    assert strip_quotes_and_signature(html_to_text(html)) == "Hi there,\n\nMy order\nis late."


def test_multipart_prefers_plain_text_and_skips_attachments():
    payload = {"mimeType": "multipart/mixed", "body": {}, "parts": [
        {"mimeType": "multipart/alternative", "body": {}, "headers": [], "parts": [
            part("text/plain", "Plain wins – ünïcode ok"), part("text/html", "<p>html loses</p>")]},
        part("text/plain", "attached notes", filename="notes.txt")]}
    parsed = parse_gmail_message(message(payload, From="Zoë <zoe@example.com>", Subject="Hi",
                                         Message_ID="<a@b>", References="<x@y> <z@w>", To="s@shop.example"))
    assert parsed.body == "Plain wins – ünïcode ok"
    assert (parsed.from_address, parsed.from_name) == ("zoe@example.com", "Zoë")
    assert (parsed.message_id_header, parsed.references, parsed.to) == ("<a@b>", "<x@y> <z@w>", ["s@shop.example"])
    assert parsed.internal_date_ms == 1767225600000


def test_message_without_a_sender_address_is_refused():
    parsed = parse_gmail_message(message(part("text/plain", "hi"), From="undisclosed"))
    assert parsed.from_problem.startswith("From:")
