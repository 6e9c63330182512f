"""The cross-channel acknowledgement ("I see you emailed us on …") once per conversation
(flows/support_decide.py: previous_contact, pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from flows.support_decide import previous_contact

T0 = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)


def msg(channel, direction, minutes, conv=1, subject=None, body="hello"):
    return {"channel": channel, "direction": direction, "occurred_at": T0 + timedelta(minutes=minutes),
            "conversation_id": conv, "subject": subject, "body": body}


def test_first_reply_on_another_channel_acknowledges_how_the_conversation_started():
    history = [msg("email", "inbound", 0, subject="Late parcel"), msg("email", "outbound", 1)]
    pc = previous_contact(history, "whatsapp", 1)
    assert pc is not None and pc.channel == "email" and pc.subject_or_summary == "Late parcel"


def test_not_repeated_once_a_reply_on_another_channel_went_out():
    history = [msg("email", "inbound", 0, subject="Late parcel"), msg("email", "outbound", 1),
               msg("whatsapp", "inbound", 5), msg("whatsapp", "outbound", 6)]
    assert previous_contact(history, "whatsapp", 1) is None
    assert previous_contact(history, "web", 1) is None  # nor on a third channel


def test_an_earlier_conversation_on_another_channel_is_acknowledged_once_in_the_new_one():
    history = [msg("email", "inbound", 0, conv=1, subject="Refund"), msg("email", "outbound", 1, conv=1)]
    assert previous_contact(history, "whatsapp", 2).channel == "email"
    history += [msg("whatsapp", "inbound", 60, conv=2), msg("whatsapp", "outbound", 61, conv=2)]
    assert previous_contact(history, "whatsapp", 2) is None


def test_a_web_reply_does_not_use_up_the_acknowledgement():
    # Web replies never quote another channel, so the next reply elsewhere still acknowledges.
    history = [msg("email", "inbound", 0, subject="Late parcel"), msg("email", "outbound", 1),
               msg("web", "inbound", 5), msg("web", "outbound", 6)]
    pc = previous_contact(history, "whatsapp", 1)
    assert pc is not None and pc.channel == "email"
