"""SLA config, business hours and the per-ticket timer, without a broker."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError

from flows.sla import (
    SlaConfig,
    SlaLogic,
    is_business_hours,
    load_sla_config,
    next_business_opening,
    parse_duration,
)
from schema.events import Channel, SupportEvent, SupportEventKind

REPO = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)  # a Monday


def opened(ticket: str, channel=Channel.WHATSAPP, priority="normal", at=T0) -> SupportEvent:
    return SupportEvent(kind=SupportEventKind.TICKET_OPENED, channel=channel, inbound_key=f"x:{ticket}",
                        ticket_id=ticket, priority=priority, occurred_at=at)


def sent(ticket: str, at: datetime, reply_kind="agent", channel=Channel.WHATSAPP) -> SupportEvent:
    return SupportEvent(kind=SupportEventKind.SENT, channel=channel, inbound_key=f"x:{ticket}",
                        ticket_id=ticket, reply_kind=reply_kind, occurred_at=at)


class Clock:
    def __init__(self, now: datetime):
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def test_shipped_config_has_the_documented_defaults():
    config = load_sla_config(REPO / "flows" / "sla.yaml")
    assert config.target(Channel.WHATSAPP, "normal") == timedelta(minutes=5)
    assert config.target(Channel.WEB, "normal") == timedelta(hours=1)
    assert config.target(Channel.EMAIL, "normal") == timedelta(hours=4)
    assert config.target(Channel.EMAIL, "urgent") == timedelta(hours=1)
    assert config.target(Channel.WEB, "low") == timedelta(hours=2)
    assert config.alerts.escalation_rate == 0.25
    assert config.alerts.first_response_p95_s == 3.0
    assert config.alerts.consumer_lag == 100


def test_overrides_pin_a_channel_priority_pair():
    config = SlaConfig.model_validate({"overrides": {"email": {"urgent": "30m"}}})
    assert config.target(Channel.EMAIL, "urgent") == timedelta(minutes=30)
    assert config.target(Channel.EMAIL, "high") == timedelta(hours=2)


def test_bad_config_names_the_field():
    with pytest.raises(ValidationError, match="business_hours.days"):
        SlaConfig.model_validate({"business_hours": {"days": ["funday"]}})
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration("soon")


def test_next_business_opening():
    config = SlaConfig.model_validate({"business_hours": {
        "timezone": "America/New_York", "days": ["mon", "tue", "wed", "thu", "fri"],
        "open": "09:00", "close": "17:00", "holidays": ["2026-03-06"]}})
    ny = config.business_hours.zone
    # Monday 10:00 in New York: open now
    monday_10 = datetime(2026, 3, 2, 10, 0, tzinfo=ny)
    assert is_business_hours(monday_10, config)
    assert next_business_opening(monday_10, config) == monday_10
    # Monday 07:00 -> same day 09:00
    assert next_business_opening(datetime(2026, 3, 2, 7, 0, tzinfo=ny), config) == \
        datetime(2026, 3, 2, 9, 0, tzinfo=ny)
    # Thursday 17:00 (closing time) -> Friday is a holiday -> Monday 09:00
    opening = next_business_opening(datetime(2026, 3, 5, 17, 0, tzinfo=ny), config)
    assert opening == datetime(2026, 3, 9, 9, 0, tzinfo=ny)
    # given in UTC, answered in the business timezone, across the DST change (8 March)
    saturday_utc = datetime(2026, 3, 7, 15, 0, tzinfo=UTC)
    opening = next_business_opening(saturday_utc, config)
    assert opening.utcoffset() == timedelta(hours=-4)
    assert (opening.hour, opening.day) == (9, 9)


def test_timer_fires_for_an_unanswered_ticket_only_after_its_deadline():
    clock = Clock(T0)
    logic = SlaLogic(SlaConfig(), None, clock)
    out, discard = logic.on_item(opened("T-1"))
    assert list(out) == [] and not discard
    assert logic.notify_at() == T0 + timedelta(minutes=5)
    clock.now = T0 + timedelta(minutes=4)
    assert list(logic.on_notify()[0]) == []
    clock.now = T0 + timedelta(minutes=5, seconds=1)
    out, discard = logic.on_notify()
    (breach,) = out
    assert (breach.kind, breach.ticket_id, breach.deadline) == ("breach", "T-1", T0 + timedelta(minutes=5))
    assert breach.raises_alert and not discard
    # fires once
    assert list(logic.on_notify()[0]) == []


def test_first_agent_reply_cancels_the_timer_and_records_met():
    clock = Clock(T0)
    logic = SlaLogic(SlaConfig(), None, clock)
    logic.on_item(opened("T-2"))
    # an acknowledgement does not stop the clock
    assert list(logic.on_item(sent("T-2", T0 + timedelta(seconds=5), reply_kind="escalation_ack"))[0]) == []
    assert logic.notify_at() == T0 + timedelta(minutes=5)
    clock.now = T0 + timedelta(minutes=1)
    (met,) = logic.on_item(sent("T-2", T0 + timedelta(minutes=1)))[0]
    assert (met.kind, met.responded_at) == ("met", T0 + timedelta(minutes=1))
    clock.now = T0 + timedelta(minutes=10)
    assert list(logic.on_notify()[0]) == []
    # a replayed ticket_opened does not restart the clock
    assert list(logic.on_item(opened("T-2"))[0]) == []
    # forgotten after retain_finished
    clock.now = T0 + timedelta(days=1, minutes=2)
    assert logic.on_notify()[1] is True


def test_reply_event_arriving_after_the_timer_fired_corrects_the_breach():
    clock = Clock(T0 + timedelta(minutes=6))
    logic = SlaLogic(SlaConfig(), None, clock)
    logic.on_item(opened("T-3"))
    (breach,) = logic.on_notify()[0]
    (met,) = logic.on_item(sent("T-3", T0 + timedelta(minutes=4)))[0]
    assert met.kind == "met" and met.responded_at <= breach.deadline


def test_late_reply_after_breach_updates_without_a_second_alert():
    clock = Clock(T0 + timedelta(minutes=6))
    logic = SlaLogic(SlaConfig(), None, clock)
    logic.on_item(opened("T-4"))
    logic.on_notify()
    (update,) = logic.on_item(sent("T-4", T0 + timedelta(minutes=7)))[0]
    assert update.kind == "breach" and update.responded_at is not None and not update.raises_alert


def test_reply_seen_before_the_opening_settles_on_opening():
    clock = Clock(T0)
    logic = SlaLogic(SlaConfig(), None, clock)
    assert list(logic.on_item(sent("T-5", T0 + timedelta(seconds=30)))[0]) == []
    (met,) = logic.on_item(opened("T-5"))[0]
    assert met.kind == "met"


def test_priority_scales_the_deadline():
    logic = SlaLogic(SlaConfig(), None, Clock(T0))
    logic.on_item(opened("T-6", channel=Channel.EMAIL, priority="urgent"))
    assert logic.notify_at() == T0 + timedelta(hours=1)


def test_state_survives_a_snapshot():
    clock = Clock(T0)
    logic = SlaLogic(SlaConfig(), None, clock)
    logic.on_item(opened("T-7"))
    resumed = SlaLogic(SlaConfig(), logic.snapshot(), clock)
    clock.now = T0 + timedelta(minutes=6)
    (breach,) = resumed.on_notify()[0]
    assert breach.ticket_id == "T-7"


def test_escalation_to_urgent_tightens_a_running_clock_but_never_loosens_it():
    clock = Clock(T0)
    logic = SlaLogic(SlaConfig(), None, clock)
    logic.on_item(opened("T-8", channel=Channel.EMAIL, priority="high"))
    assert logic.notify_at() == T0 + timedelta(hours=2)
    urgent = SupportEvent(kind=SupportEventKind.ESCALATED, channel=Channel.EMAIL, inbound_key="x:T-8",
                          ticket_id="T-8", priority="urgent", occurred_at=T0 + timedelta(minutes=1))
    logic.on_item(urgent)
    assert logic.notify_at() == T0 + timedelta(hours=1)
    logic.on_item(urgent.model_copy(update={"priority": "high"}))
    assert logic.notify_at() == T0 + timedelta(hours=1)
    clock.now = T0 + timedelta(hours=1, seconds=1)
    (breach,) = logic.on_notify()[0]
    assert breach.priority == "urgent" and breach.deadline == T0 + timedelta(hours=1)
