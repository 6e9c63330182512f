"""First-response SLA: config, business hours and the per-ticket timer.

A ticket's clock starts with its `ticket_opened` event and stops at the first reply *sent*
to the customer by the agent or a person (`sent` with reply_kind agent/human). The timer
fires on wall-clock time (`notify_at` = deadline), so a breach is reported even when no
other event arrives. The transition functions are pure; `SlaLogic` adapts them to
Bytewax's `op.stateful`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo

import yaml
from bytewax.operators import StatefulLogic
from pydantic import BaseModel, ConfigDict, Field, field_validator

from schema.events import Channel, SupportEvent, SupportEventKind

Priority = Literal["low", "normal", "high", "urgent"]
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
RESPONSE_KINDS = frozenset({"agent", "human"})  # acks and holding messages do not stop the clock

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_UNIT_S = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(value: str | float | timedelta) -> timedelta:
    """'5m', '1h', '90s', '1d' or a number of seconds."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, (int, float)):
        return timedelta(seconds=value)
    match = _DURATION.match(str(value))
    if not match:
        raise ValueError(f"not a duration: {value!r} (use e.g. 30s, 5m, 4h, 1d)")
    return timedelta(seconds=float(match.group(1)) * _UNIT_S[match.group(2)])


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BusinessHours(_Model):
    timezone: str = "UTC"
    days: list[str] = Field(default_factory=lambda: list(WEEKDAYS[:5]))
    open: time = time(9, 0)
    close: time = time(17, 0)
    holidays: list[date] = Field(default_factory=list)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        ZoneInfo(value)  # raises for an unknown zone
        return value

    @field_validator("days")
    @classmethod
    def _weekdays(cls, value: list[str]) -> list[str]:
        days = [d.strip().lower()[:3] for d in value]
        unknown = [d for d in days if d not in WEEKDAYS]
        if unknown:
            raise ValueError(f"unknown weekday(s) {unknown}; use {list(WEEKDAYS)}")
        return days

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def is_open_day(self, day: date) -> bool:
        return WEEKDAYS[day.weekday()] in self.days and day not in self.holidays


class AlertThresholds(_Model):
    escalation_rate: float = 0.25
    escalation_min_handled: int = 4
    first_response_p95_s: float = 3.0
    consumer_lag: int = 100
    dead_letters_new: int = 0
    health_poll: timedelta = timedelta(seconds=15)

    @field_validator("health_poll", mode="before")
    @classmethod
    def _poll(cls, value) -> timedelta:
        return parse_duration(value)


class SlaConfig(_Model):
    first_response: dict[Channel, timedelta] = Field(
        default_factory=lambda: {
            Channel.WHATSAPP: timedelta(minutes=5),
            Channel.WEB: timedelta(hours=1),
            Channel.EMAIL: timedelta(hours=4),
        }
    )
    priority_factors: dict[str, float] = Field(
        default_factory=lambda: {"urgent": 0.25, "high": 0.5, "normal": 1.0, "low": 2.0}
    )
    overrides: dict[Channel, dict[str, timedelta]] = Field(default_factory=dict)
    retain_finished: timedelta = timedelta(days=1)
    business_hours: BusinessHours = Field(default_factory=BusinessHours)
    # Per channel: "always" (the clock runs around the clock) or "business_hours" (it pauses
    # while people are not working, so a ticket opened at night is due after the opening).
    clock: dict[Channel, Literal["always", "business_hours"]] = Field(default_factory=dict)
    alerts: AlertThresholds = Field(default_factory=AlertThresholds)

    @field_validator("first_response", mode="before")
    @classmethod
    def _targets(cls, value: dict) -> dict:
        return {k: parse_duration(v) for k, v in (value or {}).items()}

    @field_validator("overrides", mode="before")
    @classmethod
    def _overrides(cls, value: dict) -> dict:
        return {ch: {p: parse_duration(d) for p, d in (m or {}).items()} for ch, m in (value or {}).items()}

    @field_validator("retain_finished", mode="before")
    @classmethod
    def _retain(cls, value) -> timedelta:
        return parse_duration(value)

    def target(self, channel: Channel, priority: str) -> timedelta:
        pinned = self.overrides.get(channel, {}).get(priority)
        if pinned is not None:
            return pinned
        base = self.first_response.get(channel, timedelta(hours=4))
        return base * self.priority_factors.get(priority, 1.0)

    def deadline(self, channel: Channel, priority: str, start: datetime) -> datetime:
        """When a ticket opened at `start` is due: its target on the channel's clock."""
        target = self.target(channel, priority)
        if self.clock.get(channel, "always") == "business_hours":
            return add_business_time(start, target, self.business_hours)
        return start + target


def load_sla_config(path: Path | str) -> SlaConfig:
    data = yaml.safe_load(Path(path).read_text()) or {}
    return SlaConfig.model_validate(data)


# --- business hours ----------------------------------------------------------------------

def is_business_hours(now: datetime, config: SlaConfig | BusinessHours) -> bool:
    hours = config.business_hours if isinstance(config, SlaConfig) else config
    local = now.astimezone(hours.zone)
    return hours.is_open_day(local.date()) and hours.open <= local.time() < hours.close


def next_business_opening(now: datetime, config: SlaConfig | BusinessHours) -> datetime:
    """`now` if people are working, else when they next start (aware, business timezone).

    Raises ValueError when the calendar has no open day in the coming year.
    """
    hours = config.business_hours if isinstance(config, SlaConfig) else config
    zone = hours.zone
    local = now.astimezone(zone)
    if is_business_hours(now, hours):
        return local
    day = local.date()
    if local.time() >= hours.open:
        day += timedelta(days=1)  # today's opening already passed (or today is closed)
    for _ in range(366):
        if hours.is_open_day(day):
            # Built as wall time in the zone, so DST days still open at e.g. 09:00 local.
            return datetime.combine(day, hours.open, tzinfo=zone)
        day += timedelta(days=1)
    raise ValueError("business hours have no open day in the next year")


def add_business_time(start: datetime, duration: timedelta, hours: BusinessHours) -> datetime:
    """`start` plus `duration` counted only while business is open (the clock pauses outside).

    Returned in UTC. Raises ValueError when the calendar has no open day in the coming year.
    """
    zone = hours.zone
    at = start.astimezone(zone)
    remaining = duration
    for _ in range(366 * 2):
        at = next_business_opening(at, hours)
        closes = datetime.combine(at.date(), hours.close, tzinfo=zone)
        available = closes - at
        if remaining <= available:
            return (at + remaining).astimezone(UTC)
        remaining -= available
        at = closes
    raise ValueError("business hours leave no time to meet this target within two years")


# --- the per-ticket timer ------------------------------------------------------------------

@dataclass(frozen=True)
class SlaOutcome:
    """A breach or a met target, for `sla_events` and (breaches) the alerts topic."""

    ticket_id: str
    channel: Channel
    priority: str
    kind: Literal["breach", "met"]
    deadline: datetime
    occurred_at: datetime  # breach: the deadline; met: when the reply was sent
    responded_at: datetime | None = None
    # False for an update of an already reported breach (adds when the reply went out).
    announce: bool = True

    @property
    def raises_alert(self) -> bool:
        return self.kind == "breach" and self.announce


@dataclass(frozen=True)
class TicketClock:
    ticket_id: str
    channel: Channel | None = None
    priority: str = "normal"
    opened_at: datetime | None = None
    deadline: datetime | None = None
    responded_at: datetime | None = None
    breached: bool = False
    # Wall-clock time after which a finished (or orphan) state is forgotten.
    forget_at: datetime | None = None

    @property
    def open(self) -> bool:
        return self.deadline is not None and self.responded_at is None and not self.breached

    @property
    def finished(self) -> bool:
        return self.deadline is not None and (self.responded_at is not None or self.breached)


def is_ticket_opened(event: SupportEvent) -> bool:
    return event.kind == SupportEventKind.TICKET_OPENED and bool(event.ticket_id)


def is_first_response(event: SupportEvent) -> bool:
    return (
        event.kind == SupportEventKind.SENT
        and bool(event.ticket_id)
        and (event.reply_kind or "") in RESPONSE_KINDS
    )


PRIORITY_RANK = {"low": 0, "normal": 1, "high": 2, "urgent": 3}


def is_priority_raise(event: SupportEvent) -> bool:
    """An escalation may raise the ticket's priority (high/urgent), tightening its target."""
    return event.kind == SupportEventKind.ESCALATED and bool(event.ticket_id) \
        and PRIORITY_RANK.get(event.priority, 1) > PRIORITY_RANK["normal"]


def on_priority_raised(
    clock: TicketClock | None, event: SupportEvent, config: SlaConfig
) -> tuple[TicketClock | None, list[SlaOutcome]]:
    """Tighten a running clock to the higher priority's target (never loosen it)."""
    if clock is None or not clock.open or clock.opened_at is None or clock.channel is None:
        return clock, []
    if PRIORITY_RANK.get(event.priority, 1) <= PRIORITY_RANK.get(clock.priority, 1):
        return clock, []
    deadline = config.deadline(clock.channel, event.priority, clock.opened_at)
    assert clock.deadline is not None
    return replace(clock, priority=event.priority, deadline=min(clock.deadline, deadline)), []


def on_ticket_opened(
    clock: TicketClock | None, event: SupportEvent, config: SlaConfig, now: datetime
) -> tuple[TicketClock, list[SlaOutcome]]:
    """Start the timer; a duplicate (replayed) ticket_opened changes nothing."""
    clock = clock or TicketClock(ticket_id=event.ticket_id or "")
    if clock.deadline is not None:
        return clock, []
    deadline = config.deadline(event.channel, event.priority, event.occurred_at)
    clock = replace(
        clock,
        channel=event.channel,
        priority=event.priority,
        opened_at=event.occurred_at,
        deadline=deadline,
    )
    if clock.responded_at is not None:  # the reply's event overtook the opening
        return _settle(clock, config, now)
    return clock, []


def on_reply_sent(
    clock: TicketClock | None, event: SupportEvent, config: SlaConfig, now: datetime
) -> tuple[TicketClock, list[SlaOutcome]]:
    """Stop the timer with the first agent/human reply; later replies change nothing."""
    clock = clock or TicketClock(ticket_id=event.ticket_id or "")
    if clock.responded_at is not None and clock.responded_at <= event.occurred_at:
        return clock, []
    clock = replace(clock, responded_at=event.occurred_at)
    if clock.deadline is None:
        # Opening not seen yet: remember the reply for a while.
        return replace(clock, forget_at=now + config.retain_finished), []
    return _settle(clock, config, now)


def _settle(clock: TicketClock, config: SlaConfig, now: datetime) -> tuple[TicketClock, list[SlaOutcome]]:
    assert clock.deadline is not None and clock.responded_at is not None and clock.channel is not None
    done = replace(clock, forget_at=now + config.retain_finished)
    base = {"ticket_id": clock.ticket_id, "channel": clock.channel, "priority": clock.priority,
            "deadline": clock.deadline}
    if clock.responded_at <= clock.deadline:
        # Met -- also when the timer fired first because the reply's event came in late:
        # the store then removes that breach.
        met = SlaOutcome(kind="met", occurred_at=clock.responded_at,
                         responded_at=clock.responded_at, **base)
        return replace(done, breached=False), [met]
    if clock.breached:  # already reported; add when the reply finally went out
        return done, [SlaOutcome(kind="breach", occurred_at=clock.deadline,
                                 responded_at=clock.responded_at, announce=False, **base)]
    return replace(done, breached=True), [
        SlaOutcome(kind="breach", occurred_at=clock.deadline, responded_at=clock.responded_at, **base)
    ]


def on_timer(clock: TicketClock, now: datetime,
             retain: timedelta = timedelta(days=1)) -> tuple[TicketClock, list[SlaOutcome]]:
    """Wall-clock tick: report a breach once the deadline passed without a reply."""
    if clock.open and clock.deadline is not None and now >= clock.deadline:
        assert clock.channel is not None
        breach = SlaOutcome(ticket_id=clock.ticket_id, channel=clock.channel,
                            priority=clock.priority, kind="breach", deadline=clock.deadline,
                            occurred_at=clock.deadline)
        # Kept until forget_at so a late reply can still be recorded against the breach.
        return replace(clock, breached=True, forget_at=now + retain), [breach]
    return clock, []


def next_wakeup(clock: TicketClock) -> datetime | None:
    if clock.open:
        return clock.deadline
    return clock.forget_at


def should_forget(clock: TicketClock, now: datetime) -> bool:
    return not clock.open and clock.forget_at is not None and now >= clock.forget_at


def _utcnow() -> datetime:
    return datetime.now(UTC)


class SlaLogic(StatefulLogic[SupportEvent, SlaOutcome, TicketClock]):
    """`op.stateful` logic keyed by ticket id."""

    def __init__(self, config: SlaConfig, resume: TicketClock | None,
                 now_getter: Callable[[], datetime] = _utcnow):
        self.config = config
        self.clock = resume
        self.now = now_getter

    def on_item(self, value: SupportEvent) -> tuple[Iterable[SlaOutcome], bool]:
        if is_ticket_opened(value):
            self.clock, out = on_ticket_opened(self.clock, value, self.config, self.now())
        elif is_first_response(value):
            self.clock, out = on_reply_sent(self.clock, value, self.config, self.now())
        elif is_priority_raise(value):
            self.clock, out = on_priority_raised(self.clock, value, self.config)
        else:
            out = []
        return out, self.clock is None

    def on_notify(self) -> tuple[Iterable[SlaOutcome], bool]:
        if self.clock is None:
            return [], StatefulLogic.DISCARD
        now = self.now()
        self.clock, out = on_timer(self.clock, now, self.config.retain_finished)
        return out, should_forget(self.clock, now)

    def notify_at(self) -> datetime | None:
        return next_wakeup(self.clock) if self.clock is not None else None

    def snapshot(self) -> TicketClock | None:
        return self.clock  # frozen dataclass: safe to share
