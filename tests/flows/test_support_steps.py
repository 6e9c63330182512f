"""Pure steps of the support flow: parsing into work items or dead letters, ordering rounds,
acknowledgement texts, recipients."""

from __future__ import annotations

from datetime import UTC, datetime

from bytewax.connectors.kafka import KafkaSourceMessage

from flows.support_steps import (
    Inbound,
    customer_rounds,
    escalation_ack_text,
    parse_inbound,
    recipient_for,
    trailing_clarifications,
    web_or_new_ticket_id,
)
from schema.events import Channel, DeadLetter, Identifier, IdentifierKind, InboundMessage


def kmsg(value: bytes, topic="p.channel.email.inbound"):
    return KafkaSourceMessage(key=b"k", value=value, topic=topic, partition=1, offset=42)


def event(channel="email", **kw) -> InboundMessage:
    sender = kw.pop("sender", [Identifier(kind=IdentifierKind.EMAIL, value=" Ann@X.com ")])
    return InboundMessage(channel=Channel(channel), channel_message_id="m1", sender=sender,
                          body="hello", received_at=datetime(2026, 3, 2, tzinfo=UTC), **kw)


def test_parse_normalises_identifiers():
    got = parse_inbound(kmsg(event().to_bytes()))
    assert isinstance(got, Inbound)
    assert got.key == "email:ann@x.com" and (got.partition, got.offset) == (1, 42)


def test_parse_dead_letters_name_the_problem():
    bad = parse_inbound(kmsg(b"\xff\xfe"))
    assert isinstance(bad, DeadLetter) and bad.raw == b"\xff\xfe" and bad.offset == 42
    assert isinstance(parse_inbound(kmsg(b"")), DeadLetter)
    wrong_topic = parse_inbound(kmsg(event().to_bytes(), topic="p.channel.whatsapp.inbound"))
    assert wrong_topic.reason.startswith("channel:")
    phone = event("whatsapp", sender=[Identifier(kind=IdentifierKind.PHONE, value="+1 2")])
    assert parse_inbound(kmsg(phone.to_bytes(), "p.channel.whatsapp.inbound")).reason.startswith("sender:")


def test_rounds_keep_each_customers_order():
    items = [(1, "a"), (2, "b"), (1, "c"), (1, "d"), (3, "e")]
    rounds = customer_rounds(items, lambda x: x[0])
    assert rounds == [[(1, "a"), (2, "b"), (3, "e")], [(1, "c")], [(1, "d")]]


def test_ticket_ids_are_deterministic():
    m = event()
    assert web_or_new_ticket_id(m) == web_or_new_ticket_id(m)
    assert web_or_new_ticket_id(event("web", ticket_id="T-web-1")) == "T-web-1"


def test_ack_says_when_a_person_answers():
    now = datetime(2026, 3, 7, 12, 0, tzinfo=UTC)  # a Saturday
    opening = datetime(2026, 3, 9, 9, 0, tzinfo=UTC)
    assert "from Monday at 09:00" in escalation_ack_text(opening, now)
    assert "shortly" in escalation_ack_text(now, now)


def test_recipient_and_unresolved_turns():
    idents = [Identifier(kind=IdentifierKind.EMAIL, value="a@x.com"),
              Identifier(kind=IdentifierKind.PHONE, value="+15550100100")]
    assert recipient_for(event("web"), idents) == "a@x.com"
    assert recipient_for(event("whatsapp"), idents[1:]) == "whatsapp:+15550100100"
    hist = [{"direction": "outbound", "kind": "agent"}, {"direction": "inbound"},
            {"direction": "outbound", "kind": "clarify"}, {"direction": "inbound"},
            {"direction": "outbound", "kind": "clarify"}]
    assert trailing_clarifications(hist) == 2
