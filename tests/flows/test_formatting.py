from datetime import UTC, datetime

from flows.agent import PreviousContact
from flows.formatting import (
    EMAIL_MAX_WORDS,
    WEB_MAX_WORDS,
    WHATSAPP_MAX_CHARS,
    format_reply,
    split_for_whatsapp,
    violations,
)
from schema.events import ReplyKind

LONG = " ".join(f"Sentence number {i} explains one more detail of our delivery policy." for i in range(200))
EMAIL_META = {"message_id_header": "<m2@mail.example>", "references": "<m1@mail.example>"}


def fmt(channel, text, **kw):
    args = {"customer_name": "Ana Lopez", "inbound_subject": "Late parcel",
            "inbound_metadata": EMAIL_META, "previous_contact": None, "kind": ReplyKind.AGENT}
    args.update(kw)
    return format_reply(channel, text, **args)


def test_email_has_greeting_sign_off_re_subject_and_threading_headers():
    r = fmt("email", "Standard delivery takes 3-5 working days.")
    assert r.body.startswith("Hi Ana,\n\n")
    assert r.body.rstrip().endswith("Northwind Goods Support")
    assert r.subject == "Re: Late parcel"
    assert r.headers == {"In-Reply-To": "<m2@mail.example>",
                         "References": "<m1@mail.example> <m2@mail.example>"}
    assert r.parts == [r.body]
    assert not violations("email", r)


def test_email_subject_is_not_prefixed_twice_and_defaults_when_missing():
    assert fmt("email", "x", inbound_subject="RE: Late parcel").subject == "RE: Late parcel"
    assert fmt("email", "x", inbound_subject=None).subject.startswith("Re: ")


def test_email_is_cut_to_500_words_and_html_is_escaped():
    r = fmt("email", LONG + " <script>alert(1)</script>")
    assert len(r.body.split()) <= EMAIL_MAX_WORDS
    assert "<script>" not in r.html
    r2 = fmt("email", "Use <b>Orders</b> & then \"Edit\".")
    assert "&lt;b&gt;Orders&lt;/b&gt; &amp; then &quot;Edit&quot;." in r2.html
    assert "<b>Orders</b>" in r2.body  # the text part stays plain text


def test_whatsapp_parts_are_plain_short_and_numbered():
    r = fmt("whatsapp", "**Good news**: " + LONG)
    assert len(r.parts) > 1
    assert all(len(p) <= WHATSAPP_MAX_CHARS for p in r.parts)
    n = len(r.parts)
    assert all(p.endswith(f"({i}/{n})") for i, p in enumerate(r.parts, 1))
    assert "**" not in r.body and r.html is None and r.subject is None
    assert not violations("whatsapp", r)


def test_whatsapp_short_answer_is_one_unnumbered_message():
    r = fmt("whatsapp", "Standard delivery takes 3-5 working days.")
    assert r.parts == ["Hi Ana! Standard delivery takes 3-5 working days."]


def test_whatsapp_split_cuts_a_very_long_word_run_at_word_boundaries():
    parts = split_for_whatsapp("word " * 400)
    assert all(len(p) <= WHATSAPP_MAX_CHARS for p in parts)
    assert not any(" wor (" in p for p in parts)


def test_web_is_cut_to_300_words():
    r = fmt("web", LONG)
    assert len(r.body.split()) <= WEB_MAX_WORDS
    assert not violations("web", r)


def test_previous_contact_on_another_channel_is_acknowledged():
    pc = PreviousContact("email", datetime(2026, 3, 3, 9, 0, tzinfo=UTC), "Late parcel")
    r = fmt("whatsapp", "It arrives tomorrow.", previous_contact=pc)
    assert 'I see you emailed us on 3 Mar 2026 about "Late parcel".' in r.parts[0]
    same = fmt("email", "It arrives tomorrow.", previous_contact=pc)
    assert "I see you" not in same.body


def test_human_reply_signs_as_the_team():
    r = fmt("email", "I have refunded you.", kind=ReplyKind.HUMAN, customer_name=None)
    assert r.body.startswith("Hello,") and "customer care team" in r.body
