"""Event models carried on Kafka, as JSON with a schema version.

Producers build these models and serialise with `to_bytes`; consumers call `parse_event`,
whose `ValidationError` names the offending field (`body: String should have at most ...`),
which is the reason recorded with a dead letter.
"""

from __future__ import annotations

import base64
import enum
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, TypeVar

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

SCHEMA_VERSION = 1

MAX_BODY_CHARS = 20_000
MAX_SUBJECT_CHARS = 998  # RFC 5322 line limit


class Channel(str, enum.Enum):
    EMAIL = "email"
    WHATSAPP = "whatsapp"
    WEB = "web"


class IdentifierKind(str, enum.Enum):
    EMAIL = "email"
    PHONE = "phone"


def utcnow() -> datetime:
    return datetime.now(UTC)


class Event(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_enum_values=False)

    schema_version: Literal[1] = SCHEMA_VERSION

    def to_bytes(self) -> bytes:
        return self.model_dump_json().encode()


class Identifier(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: IdentifierKind
    value: Annotated[str, Field(min_length=3, max_length=320)]
    # Proven by the channel (Twilio signature, DMARC-aligned Gmail sender, a confirmed
    # one-time code or link). Only verified identifiers link or merge customers.
    verified: bool = False


class InboundMessage(Event):
    """One customer message from any channel, as the ingress saw it."""

    channel: Channel
    channel_message_id: Annotated[str, Field(min_length=1, max_length=512)]
    sender: Annotated[list[Identifier], Field(min_length=1, max_length=4)]
    sender_name: Annotated[str | None, Field(max_length=200)] = None
    subject: Annotated[str | None, Field(max_length=MAX_SUBJECT_CHARS)] = None
    body: Annotated[str, Field(min_length=1, max_length=MAX_BODY_CHARS)]
    received_at: AwareDatetime
    # Gmail threadId, or the web ticket id; lets replies land in the same thread.
    thread_id: Annotated[str | None, Field(max_length=512)] = None
    ticket_id: Annotated[str | None, Field(max_length=64)] = None
    # Channel-specific extras: Message-ID/References headers, To, ProfileName, MediaUrls,
    # web form category, ...
    metadata: dict[str, Any] = Field(default_factory=dict)

    @property
    def inbound_key(self) -> str:
        """Unique across channels: the outbox and message rows are keyed by it."""
        return f"{self.channel.value}:{self.channel_message_id}"


class ReplyKind(str, enum.Enum):
    AGENT = "agent"
    ESCALATION_ACK = "escalation_ack"
    HOLDING = "holding"
    CLARIFY = "clarify"
    HUMAN = "human"


class Reply(Event):
    """A reply to send to a customer on one channel (written to the outbox)."""

    inbound_key: Annotated[str, Field(min_length=1, max_length=600)]
    kind: ReplyKind
    channel: Channel
    customer_id: int
    conversation_id: int | None = None
    ticket_id: str | None = None
    recipient: Annotated[str, Field(min_length=3, max_length=320)]
    subject: str | None = None
    body: Annotated[str, Field(min_length=1)]
    # WhatsApp: the body split into <=300-char messages; email: one part.
    parts: list[str] = Field(default_factory=list)
    html: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    thread_id: str | None = None
    created_at: AwareDatetime = Field(default_factory=utcnow)


class EscalationReason(str, enum.Enum):
    HUMAN_REQUESTED = "human_requested"
    REFUND = "refund"
    PRICING = "pricing"
    LEGAL = "legal"
    PROFANITY = "profanity"
    ANGER = "anger"
    UNRESOLVED = "unresolved"
    COMPLAINT = "complaint"
    AGENT = "agent"  # the agent (LLM or local) decided it needs a person
    LOW_CONFIDENCE = "low_confidence"


class Escalation(Event):
    escalation_id: int
    customer_id: int
    conversation_id: int | None = None
    ticket_id: str | None = None
    channel: Channel
    reason: EscalationReason
    detail: str = ""
    inbound_key: str
    priority: Literal["low", "normal", "high", "urgent"] = "normal"
    created_at: AwareDatetime = Field(default_factory=utcnow)


class SupportEventKind(str, enum.Enum):
    RECEIVED = "received"
    REPLIED = "replied"
    ESCALATED = "escalated"
    SENT = "sent"
    FAILED = "failed"
    TICKET_OPENED = "ticket_opened"


class SupportEvent(Event):
    """What happened to a message; the metrics flow's only input."""

    kind: SupportEventKind
    channel: Channel
    inbound_key: str
    customer_id: int | None = None
    ticket_id: str | None = None
    priority: Literal["low", "normal", "high", "urgent"] = "normal"
    occurred_at: AwareDatetime
    received_at: AwareDatetime | None = None  # of the inbound message, for latency
    sentiment: float | None = None
    agent_tokens: int = 0
    kb_hit: bool | None = None
    reason: str | None = None
    # For replied/sent/failed: agent, escalation_ack, holding, clarify or human.
    reply_kind: str | None = None


class MetricWindow(Event):
    channel: Channel
    window_start: AwareDatetime
    window_end: AwareDatetime
    received: int = 0
    replied: int = 0
    escalated: int = 0
    sent: int = 0
    failed: int = 0
    first_response_p50_ms: float | None = None
    first_response_p95_ms: float | None = None
    sentiment_mean: float | None = None
    agent_tokens: int = 0
    kb_lookups: int = 0
    kb_hits: int = 0

    @property
    def escalation_rate(self) -> float:
        handled = self.replied + self.escalated
        return self.escalated / handled if handled else 0.0


class Alert(Event):
    kind: Literal["escalation_rate", "first_response_p95", "consumer_lag", "dead_letters", "sla_breach",
                  "crash_loop"]
    value: float
    threshold: float
    detail: dict[str, Any] = Field(default_factory=dict)
    raised_at: AwareDatetime = Field(default_factory=utcnow)


class DeadLetter(Event):
    source_topic: str
    partition: int | None = None
    offset: int | None = None
    key_b64: str | None = None
    raw_b64: str
    reason: str
    occurred_at: AwareDatetime = Field(default_factory=utcnow)

    @classmethod
    def for_raw(
        cls,
        *,
        source_topic: str,
        raw: bytes | None,
        reason: str,
        key: bytes | None = None,
        partition: int | None = None,
        offset: int | None = None,
    ) -> DeadLetter:
        return cls(
            source_topic=source_topic,
            partition=partition,
            offset=offset,
            key_b64=base64.b64encode(key).decode() if key is not None else None,
            raw_b64=base64.b64encode(raw or b"").decode(),
            reason=reason,
        )

    @property
    def raw(self) -> bytes:
        return base64.b64decode(self.raw_b64)


E = TypeVar("E", bound=Event)


def parse_event(model: type[E], raw: bytes | str) -> E:
    """Decode and validate; raises `ValidationError` naming the field."""
    return model.model_validate_json(raw)


def describe_error(exc: Exception) -> str:
    """A one-line reason, naming fields for validation errors (for dead letters, 4xx)."""
    if isinstance(exc, ValidationError):
        parts = []
        for err in exc.errors(include_url=False):
            loc = ".".join(str(p) for p in err["loc"]) or "(root)"
            parts.append(f"{loc}: {err['msg']}")
        return "; ".join(parts)
    return f"{type(exc).__name__}: {exc}"
