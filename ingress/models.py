"""Request and response models of the ingress's HTTP API."""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
    StringConstraints,
    field_validator,
)

from schema.events import MAX_BODY_CHARS

E164 = re.compile(r"^\+[1-9]\d{7,14}$")
Category = Literal["general", "technical", "billing", "feedback", "bug_report"]


def storable_text(value: str) -> str:
    """Text Postgres and Kafka can carry: no NUL character, no lone UTF-16 surrogate."""
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError("must be valid Unicode text") from exc
    return value


Stripped = Annotated[str, StringConstraints(strip_whitespace=True), AfterValidator(storable_text)]


class SupportRequestCreate(BaseModel):
    """The web support form. The page's client-side checks mirror these rules."""

    model_config = ConfigDict(extra="forbid")

    name: Annotated[Stripped, Field(min_length=2, max_length=200)]
    email: Annotated[EmailStr, Field(max_length=320), AfterValidator(storable_text)]
    subject: Annotated[Stripped, Field(min_length=5, max_length=200)]
    message: Annotated[Stripped, Field(min_length=10, max_length=MAX_BODY_CHARS)]
    category: Category = "general"
    phone: Annotated[Stripped | None, Field(max_length=20)] = None

    @field_validator("phone")
    @classmethod
    def _e164(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        compact = re.sub(r"[\s().-]", "", value)
        if not E164.match(compact):
            raise ValueError("phone must be in E.164 format, e.g. +14155550100")
        return compact


class TicketReplyCreate(BaseModel):
    """A customer's reply on the ticket page; `reply_id` is chosen by the page per message."""

    model_config = ConfigDict(extra="forbid")

    message: Annotated[Stripped, Field(min_length=1, max_length=MAX_BODY_CHARS)]
    reply_id: Annotated[str, Field(pattern=r"^[0-9A-Za-z-]{8,64}$",
                                   default_factory=lambda: uuid.uuid4().hex)]


class TicketReplyAccepted(BaseModel):
    ticket_id: str
    reply_id: str
    status: str = "accepted"


class TicketCreated(BaseModel):
    ticket_id: str
    status: str = "open"


class TicketMessage(BaseModel):
    direction: Literal["inbound", "outbound"]
    author: str
    channel: str
    body: str
    occurred_at: datetime


class TicketContact(BaseModel):
    kind: Literal["email", "phone"]
    masked: str  # never the full address or number
    verified: bool


class TicketPublic(BaseModel):
    ticket_id: str
    status: str
    subject: str | None
    category: str
    created_at: datetime
    updated_at: datetime
    first_response_at: datetime | None
    messages: list[TicketMessage]
    # The ticket's email/phone, masked, and whether each is confirmed (/support/verify).
    contacts: list[TicketContact] = []


class IdentifierPublic(BaseModel):
    kind: str
    value: str
    first_channel: str | None


class ConversationSummary(BaseModel):
    id: int
    status: str
    first_channel: str
    last_channel: str
    opened_at: datetime
    last_message_at: datetime


class CustomerPublic(BaseModel):
    id: int
    display_name: str | None
    created_at: datetime
    identifiers: list[IdentifierPublic]
    conversations: list[ConversationSummary]
    open_tickets: int


class ConversationMessage(BaseModel):
    id: int
    channel: str
    direction: str
    author: str
    subject: str | None
    body: str
    ticket_id: str | None
    occurred_at: datetime


class ConversationPublic(ConversationSummary):
    customer_id: int
    messages: list[ConversationMessage]
    count: int


class ChannelMetrics(BaseModel):
    channel: str
    windows: int
    received: int
    replied: int
    escalated: int
    sent: int
    failed: int
    escalation_rate: float
    first_response_p95_ms: float | None
    sentiment_mean: float | None
    agent_tokens: int
    kb_hit_rate: float | None
    last_window_start: datetime | None


class ChannelMetricsPublic(BaseModel):
    minutes: int
    data: list[ChannelMetrics]
    count: int


class HealthStatus(BaseModel):
    status: Literal["ok", "degraded"]


class HealthPublic(BaseModel):
    status: Literal["ok", "degraded"]
    kafka: dict
    postgres: dict
    channels: dict[str, dict]
