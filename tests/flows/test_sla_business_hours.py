"""The SLA clock pauses outside business hours on the channels configured so (flows/sla.py)."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

import pytest
from hypothesis import given, settings as hsettings, strategies as st

from flows.sla import (
    BusinessHours,
    SlaConfig,
    TicketClock,
    add_business_time,
    is_business_hours,
    load_sla_config,
    on_priority_raised,
    on_ticket_opened,
    on_timer,
)
from fte.settings import REPO_ROOT
from schema.events import Channel, SupportEvent, SupportEventKind

HOURS = BusinessHours(timezone="Europe/London", days=["mon", "tue", "wed", "thu", "fri"],
                      open=time(9), close=time(17, 30), holidays=[date(2026, 12, 25)])


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_within_the_day_the_clock_runs():
    # Wed 2026-11-25 10:00 London (= UTC in winter) + 1h
    assert add_business_time(utc(2026, 11, 25, 10), timedelta(hours=1), HOURS) == utc(2026, 11, 25, 11)


def test_opened_at_night_the_clock_starts_at_the_opening():
    # Wed 23:00 + 1h -> Thu 10:00
    assert add_business_time(utc(2026, 11, 25, 23), timedelta(hours=1), HOURS) == utc(2026, 11, 26, 10)


def test_the_clock_pauses_over_the_night_and_the_weekend():
    # Fri 17:00 + 1h: 30 min on Friday, 30 min on Monday morning
    assert add_business_time(utc(2026, 11, 27, 17), timedelta(hours=1), HOURS) == utc(2026, 11, 30, 9, 30)


def test_holidays_are_closed():
    # Thu 24 Dec 17:00 + 1h -> 30 min, Christmas closed, weekend closed... Mon 28 Dec 09:30
    assert add_business_time(utc(2026, 12, 24, 17), timedelta(hours=1), HOURS) == utc(2026, 12, 28, 9, 30)


def test_summer_time_opens_at_local_nine():
    # Mon 2026-06-01 06:00 UTC = 07:00 BST, + 30 min -> 09:30 BST = 08:30 UTC
    assert add_business_time(utc(2026, 6, 1, 6), timedelta(minutes=30), HOURS) == utc(2026, 6, 1, 8, 30)


def test_a_calendar_without_open_days_is_refused():
    closed = BusinessHours(days=["sat"], holidays=[])
    with pytest.raises(ValueError):
        add_business_time(utc(2026, 1, 1), timedelta(hours=10_000), closed)


@hsettings(max_examples=200, deadline=None)
@given(start=st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2027, 12, 31), timezones=st.just(UTC)),
       minutes=st.integers(min_value=1, max_value=60 * 40))
def test_business_time_counted_equals_the_target(start, minutes):
    """Summing the open minutes between start and the deadline gives back the target."""
    due = add_business_time(start, timedelta(minutes=minutes), HOURS)
    assert due >= start + timedelta(minutes=minutes)
    assert is_business_hours(due - timedelta(seconds=1), HOURS)
    # Count open time minute by minute from the start (aligned walk, 1-minute resolution).
    open_s, t = 0.0, start
    step = timedelta(minutes=1)
    while t < due:
        nxt = min(t + step, due)
        if is_business_hours(t, HOURS):
            open_s += (nxt - t).total_seconds()
        t = nxt
    assert abs(open_s - minutes * 60) <= 60  # minute resolution at the edges


def _opened(channel: Channel, at: datetime, priority: str = "normal") -> SupportEvent:
    return SupportEvent(kind=SupportEventKind.TICKET_OPENED, channel=channel, inbound_key="k1",
                        customer_id=1, ticket_id="T-1", occurred_at=at, priority=priority)


def test_per_channel_clock_an_escalation_at_night_does_not_breach_before_opening():
    config = SlaConfig(business_hours=HOURS, clock={Channel.EMAIL: "business_hours"})
    night = utc(2026, 11, 25, 23)  # Wed 23:00
    email, _ = on_ticket_opened(None, _opened(Channel.EMAIL, night, "urgent"), config, night)
    whatsapp, _ = on_ticket_opened(None, _opened(Channel.WHATSAPP, night), config, night)
    # email urgent: 4h * 0.25 = 1h of business time -> Thu 10:00; WhatsApp runs around the clock.
    assert email.deadline == utc(2026, 11, 26, 10)
    assert whatsapp.deadline == night + timedelta(minutes=5)
    _, breaches = on_timer(email, utc(2026, 11, 26, 9, 59))
    assert breaches == []
    _, breaches = on_timer(email, utc(2026, 11, 26, 10))
    assert [b.kind for b in breaches] == ["breach"]


def test_priority_raise_uses_business_time_too():
    config = SlaConfig(business_hours=HOURS, clock={Channel.EMAIL: "business_hours"})
    fri = utc(2026, 11, 27, 17)
    clock, _ = on_ticket_opened(None, _opened(Channel.EMAIL, fri), config, fri)
    assert clock.deadline == utc(2026, 11, 30, 12, 30)  # 4h: 30 min Fri + 3h30 Mon
    raised = SupportEvent(kind=SupportEventKind.ESCALATED, channel=Channel.EMAIL, inbound_key="k2",
                          customer_id=1, ticket_id="T-1", occurred_at=fri, priority="urgent")
    clock, _ = on_priority_raised(clock, raised, config)
    assert clock.deadline == utc(2026, 11, 30, 9, 30)  # 1h: 30 min Fri + 30 min Mon


def test_shipped_config_pauses_email_and_web_but_not_whatsapp():
    config = load_sla_config(REPO_ROOT / "flows" / "sla.yaml")
    assert config.clock[Channel.EMAIL] == config.clock[Channel.WEB] == "business_hours"
    assert config.clock.get(Channel.WHATSAPP, "always") == "always"
    assert isinstance(TicketClock(ticket_id="x"), TicketClock)
