"""Pure steps of the support flow (no broker, no database): parsing into work items,
acknowledgement texts, per-customer ordering rounds, event building.

The wiring is in flows/support.py, the Postgres side in sinks/support_store.py.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from flows.sentiment import Trend
from schema.events import (
    DeadLetter,
    Identifier,
    InboundMessage,
    ReplyKind,
    SupportEvent,
    SupportEventKind,
    describe_error,
    parse_event,
    utcnow,
)
from schema.identity import InvalidIdentifier, identity_key, normalize

MAX_EVENT_BYTES = 64 * 1024
TICKET_NAMESPACE = uuid.UUID("6c1f7a8e-0b7e-4f7e-9a51-2f1d0c3e5b11")


@dataclass(frozen=True)
class Inbound:
    """A valid inbound message with normalised identifiers and where it came from."""

    msg: InboundMessage
    identifiers: tuple[Identifier, ...]
    topic: str
    partition: int
    offset: int

    @property
    def key(self) -> str:
        return identity_key(self.identifiers[0])


@dataclass(frozen=True)
class Work:
    """A message after identity resolution and sentiment, ready for the batch handler."""

    inbound: Inbound
    customer_id: int
    sentiment: float
    trend: Trend
    rate: str = "answer"  # flows.rate_limit.Verdict: answer, wait_notice or coalesce


def parse_inbound(msg: Any, *, fold_gmail: bool = False, region: str = "US") -> Inbound | DeadLetter:
    """KafkaSourceMessage / KafkaError -> Inbound, or the dead letter saying why not."""
    from bytewax.connectors.kafka import KafkaError

    if isinstance(msg, KafkaError):
        m = msg.msg
        return DeadLetter.for_raw(source_topic=m.topic or "?", raw=m.value, key=m.key,
                                  partition=m.partition, offset=m.offset,
                                  reason=f"kafka error: {msg.err}")
    where = {"source_topic": msg.topic or "?", "raw": msg.value, "key": msg.key,
             "partition": msg.partition, "offset": msg.offset}
    if not msg.value:
        return DeadLetter.for_raw(reason="empty message", **where)
    if len(msg.value) > MAX_EVENT_BYTES:
        return DeadLetter.for_raw(reason=f"message larger than {MAX_EVENT_BYTES} bytes", **where)
    try:
        event = parse_event(InboundMessage, msg.value)
    except Exception as exc:  # noqa: BLE001 -- every decoding failure is a dead letter with its reason
        return DeadLetter.for_raw(reason=describe_error(exc), **where)
    expected = (msg.topic or "").rsplit(".", 2)
    if len(expected) == 3 and expected[1] in {"email", "whatsapp", "web"} \
            and expected[1] != event.channel.value:
        return DeadLetter.for_raw(reason=f"channel: {event.channel.value!r} on the "
                                  f"{expected[1]} topic", **where)
    try:
        idents = []
        for ident in event.sender:
            n = normalize(ident, fold_gmail=fold_gmail, default_region=region)
            if n not in idents:
                idents.append(n)
    except InvalidIdentifier as exc:
        return DeadLetter.for_raw(reason=f"sender: {exc}", **where)
    return Inbound(event, tuple(idents), msg.topic, msg.partition, msg.offset)


def customer_rounds(items: Sequence[Any], customer_of) -> list[list[Any]]:
    """Round k holds each customer's k-th item: within a round every customer appears once,
    so a round runs in parallel and a customer's messages are still handled in order."""
    rounds: list[list[Any]] = []
    seen: dict[int, int] = {}
    for item in items:
        c = customer_of(item)
        k = seen.get(c, 0)
        seen[c] = k + 1
        if k == len(rounds):
            rounds.append([])
        rounds[k].append(item)
    return rounds


def web_or_new_ticket_id(msg: InboundMessage) -> str:
    """Web tickets keep the id the form gave; others get one derived from the message that
    opened the conversation, so a replay creates the same ticket."""
    if msg.ticket_id:
        return msg.ticket_id
    return f"T-{uuid.uuid5(TICKET_NAMESPACE, msg.inbound_key)}"


def escalation_ack_text(reopens_at: datetime | None, now: datetime) -> str:
    """"A person will follow up" in words that say when (business hours)."""
    base = "Thank you for your message. I've passed your case to a member of our customer care team"
    if reopens_at is None or reopens_at <= now + timedelta(minutes=1):
        return f"{base}, who will get back to you shortly."
    when = f"{reopens_at:%A} at {reopens_at:%H:%M}" if reopens_at - now < timedelta(days=6) \
        else f"{reopens_at.day} {reopens_at:%B} at {reopens_at:%H:%M}"
    return f"{base}. Our team is away right now and will get back to you from {when} ({reopens_at.tzname()})."


HOLDING_TEXT = ("Thanks, we've added this to your open case. The colleague handling it will "
                "reply to you here - there's no need to send it again.")


def recipient_for(msg: InboundMessage, identifiers: Sequence[Identifier]) -> str:
    """Where the reply goes: the email address, or the WhatsApp number, of the sender."""
    want = "phone" if msg.channel.value == "whatsapp" else "email"
    for ident in identifiers:
        if ident.kind.value == want:
            return f"whatsapp:{ident.value}" if want == "phone" else ident.value
    first = identifiers[0]
    return f"whatsapp:{first.value}" if msg.channel.value == "whatsapp" else first.value


def support_event(kind: SupportEventKind, w: Work, *, ticket_id: str | None, priority: str = "normal",
                  **extra) -> SupportEvent:
    msg = w.inbound.msg
    return SupportEvent(kind=kind, channel=msg.channel, inbound_key=msg.inbound_key,
                        customer_id=w.customer_id, ticket_id=ticket_id, priority=priority,
                        occurred_at=utcnow(), received_at=msg.received_at, **extra)


@dataclass
class Outcome:
    """What the handler decided for one message (written in one transaction per batch)."""

    work: Work
    handled_as: str  # answered | clarified | escalated | attached
    reply_kind: ReplyKind | None = None
    reply_text: str | None = None
    escalation_reason: str | None = None
    escalation_detail: str = ""
    priority: str = "normal"
    kb_slugs: list[str] = field(default_factory=list)
    kb_top_score: float | None = None
    kb_hit: bool | None = None
    tokens: int = 0
    holding: bool = False


def trailing_clarifications(history: Iterable[dict]) -> int:
    """Clarifying questions in a row at the end of the conversation (unresolved turns)."""
    n = 0
    for h in reversed(list(history)):
        if h["direction"] != "outbound":
            continue
        if h.get("kind") == "clarify":
            n += 1
        else:
            break
    return n
