"""Pure window arithmetic for the metrics flow: what each event contributes, and the
aggregate of a 1-minute channel window.

A window's contents are a map `event identity -> Contribution`. Merging two contents is a
key union, which is idempotent and order-free: the same event replayed, or a late event
arriving after the window closed, merges into the stored window without ever counting
twice. The aggregate (`summarize`) is always recomputed from the whole map.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from schema.events import Channel, MetricWindow, SupportEvent, SupportEventKind

WINDOW = timedelta(minutes=1)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# Replies that do not answer the question: an escalated message is counted once (as
# escalated) in the escalation-rate denominator, not again for its acknowledgement.
NON_ANSWER_REPLIES = frozenset({"escalation_ack", "holding"})

Kind = Literal["received", "replied", "escalated", "sent", "failed", "first_response"]


@dataclass(frozen=True)
class Contribution:
    kind: Kind
    latency_ms: float | None = None
    sentiment: float | None = None
    tokens: int = 0
    kb_hit: bool | None = None

    def to_json(self) -> dict:
        """Compact form stored in `metric_windows.contributions`."""
        out: dict = {"k": self.kind}
        if self.latency_ms is not None:
            out["l"] = round(self.latency_ms, 3)
        if self.sentiment is not None:
            out["s"] = round(self.sentiment, 4)
        if self.tokens:
            out["t"] = self.tokens
        if self.kb_hit is not None:
            out["h"] = self.kb_hit
        return out

    @classmethod
    def from_json(cls, data: Mapping) -> Contribution:
        return cls(kind=data["k"], latency_ms=data.get("l"), sentiment=data.get("s"),
                   tokens=int(data.get("t", 0)), kb_hit=data.get("h"))


@dataclass(frozen=True)
class Fact:
    """One contribution on its way to a window: identity, channel and event time."""

    key: str
    channel: Channel
    occurred_at: datetime
    contribution: Contribution


Contents = dict[str, Contribution]


@dataclass(frozen=True)
class WindowUpdate:
    """Contents for one (channel, window): a closed window, or late facts for it."""

    channel: Channel
    window_start: datetime
    contents: Contents
    closed: bool  # False: late facts arriving after the window was emitted

    @property
    def window_end(self) -> datetime:
        return self.window_start + WINDOW


def window_start_of(ts: datetime) -> datetime:
    """Start of the 1-minute window holding `ts` (UTC, aligned to the epoch)."""
    ts = ts.astimezone(UTC)
    return ts.replace(second=0, microsecond=0)


def window_start_of_id(window_id: int) -> datetime:
    """Bytewax tumbling window ids count windows from `EPOCH`."""
    return EPOCH + window_id * WINDOW


def fact_time(fact: Fact) -> datetime:
    return fact.occurred_at.astimezone(UTC)


# --- events -> facts ------------------------------------------------------------------------

def contribution_of(event: SupportEvent) -> Contribution | None:
    """What one (already de-duplicated) event adds to its window; None: nothing."""
    kind = event.kind
    if kind == SupportEventKind.RECEIVED:
        return Contribution("received", sentiment=event.sentiment)
    if kind == SupportEventKind.REPLIED:
        if (event.reply_kind or "") in NON_ANSWER_REPLIES:
            return None
        return Contribution("replied", tokens=event.agent_tokens, kb_hit=event.kb_hit)
    if kind == SupportEventKind.ESCALATED:
        return Contribution("escalated", tokens=event.agent_tokens)
    if kind == SupportEventKind.SENT:
        return Contribution("sent")
    if kind == SupportEventKind.FAILED:
        return Contribution("failed")
    return None  # ticket_opened: the SLA timers' business


def first_response_latency_ms(event: SupportEvent, received_at: datetime | None) -> float | None:
    """Received -> first replied/sent, in ms; None without a reception time."""
    start = event.received_at or received_at
    if start is None:
        return None
    return max(0.0, (event.occurred_at - start).total_seconds() * 1000.0)


@dataclass(frozen=True)
class InboundSeen:
    """Per inbound message: which event kinds were counted, and its first response."""

    kinds: frozenset[str] = frozenset()
    received_at: datetime | None = None
    responded: bool = False


def facts_for(seen: InboundSeen, event: SupportEvent) -> tuple[InboundSeen, list[Fact]]:
    """De-duplicate by (kind, inbound message) and mark the first response.

    The support flow re-emits events after its own recovery; each kind counts once per
    inbound message. The first `replied` or `sent` event of a message also yields a
    `first_response` fact carrying the latency.
    """
    kind = event.kind.value
    if kind in seen.kinds:
        return seen, []
    received_at = seen.received_at
    if event.kind == SupportEventKind.RECEIVED:
        received_at = event.received_at or event.occurred_at
    facts: list[Fact] = []
    contribution = contribution_of(event)
    if contribution is not None:
        facts.append(Fact(f"{kind}:{event.inbound_key}", event.channel, event.occurred_at, contribution))
    responded = seen.responded
    if not responded and event.kind in (SupportEventKind.REPLIED, SupportEventKind.SENT):
        latency = first_response_latency_ms(event, received_at)
        if latency is not None:
            responded = True
            facts.append(Fact(f"first:{event.inbound_key}", event.channel, event.occurred_at,
                              Contribution("first_response", latency_ms=latency)))
    return InboundSeen(seen.kinds | {kind}, received_at, responded), facts


# --- window contents ------------------------------------------------------------------------

def empty_contents() -> Contents:
    return {}


def add_fact(contents: Contents, fact: Fact) -> Contents:
    contents[fact.key] = fact.contribution
    return contents


def merge_contents(a: Contents, b: Contents) -> Contents:
    merged = dict(a)
    merged.update(b)
    return merged


def contents_to_json(contents: Contents) -> dict:
    return {key: c.to_json() for key, c in contents.items()}


def contents_from_json(data: Mapping) -> Contents:
    return {key: Contribution.from_json(value) for key, value in data.items()}


def percentile(values: Iterable[float], q: float) -> float | None:
    """Linear interpolation between closest ranks (numpy's default); None when empty."""
    ordered = sorted(values)
    if not ordered:
        return None
    rank = q * (len(ordered) - 1)
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summarize(channel: Channel, window_start: datetime, contents: Contents) -> MetricWindow:
    counts = {"received": 0, "replied": 0, "escalated": 0, "sent": 0, "failed": 0}
    latencies: list[float] = []
    sentiments: list[float] = []
    tokens = kb_lookups = kb_hits = 0
    for c in contents.values():
        if c.kind in counts:
            counts[c.kind] += 1
        if c.kind == "first_response" and c.latency_ms is not None:
            latencies.append(c.latency_ms)
        if c.sentiment is not None:
            sentiments.append(c.sentiment)
        tokens += c.tokens
        if c.kb_hit is not None:
            kb_lookups += 1
            kb_hits += int(c.kb_hit)
    return MetricWindow(
        channel=channel,
        window_start=window_start,
        window_end=window_start + WINDOW,
        first_response_p50_ms=percentile(latencies, 0.50),
        first_response_p95_ms=percentile(latencies, 0.95),
        sentiment_mean=sum(sentiments) / len(sentiments) if sentiments else None,
        agent_tokens=tokens,
        kb_lookups=kb_lookups,
        kb_hits=kb_hits,
        **counts,
    )
