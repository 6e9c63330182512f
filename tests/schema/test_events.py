import pytest
from pydantic import ValidationError

from schema.events import (
    Channel,
    DeadLetter,
    InboundMessage,
    describe_error,
    parse_event,
)

VALID = {
    "channel": "whatsapp",
    "channel_message_id": "SM123",
    "sender": [{"kind": "phone", "value": "+15550100100"}],
    "body": "Where is my order?",
    "received_at": "2026-01-01T10:00:00Z",
}


def test_inbound_message_round_trips_with_schema_version():
    msg = parse_event(InboundMessage, InboundMessage.model_validate(VALID).to_bytes())
    assert msg.channel is Channel.WHATSAPP
    assert msg.schema_version == 1
    assert msg.inbound_key == "whatsapp:SM123"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"channel": "sms"}, "channel"),
        ({"body": ""}, "body"),
        ({"body": "x" * 20_001}, "body"),
        ({"sender": []}, "sender"),
        ({"received_at": "2026-01-01T10:00:00"}, "received_at"),  # naive time refused
        ({"sender": [{"kind": "fax", "value": "123"}]}, "sender.0.kind"),
        ({"schema_version": 2}, "schema_version"),
        ({"unexpected": 1}, "unexpected"),
    ],
)
def test_validation_error_names_the_offending_field(change, field):
    with pytest.raises(ValidationError) as info:
        InboundMessage.model_validate({**VALID, **change})
    assert describe_error(info.value).startswith(f"{field}:")


def test_undecodable_bytes_are_described():
    with pytest.raises(ValidationError) as info:
        parse_event(InboundMessage, b"\xff\xfe not json")
    assert "json" in describe_error(info.value).lower()


def test_dead_letter_keeps_the_raw_bytes():
    raw = b"\x00\x01 broken"
    dl = DeadLetter.for_raw(source_topic="channel.web.inbound", raw=raw, reason="body: missing",
                            partition=2, offset=41)
    again = parse_event(DeadLetter, dl.to_bytes())
    assert again.raw == raw and again.offset == 41
