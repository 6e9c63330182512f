"""Typed values passed between the support flow's stages:

    load_context -> BatchContext -> decide -> BatchPlan -> persist

A BatchContext is everything the decisions need, read in one go; a BatchPlan is every row and
event the batch writes, in one transaction. Neither holds a connection.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from flows.support_steps import Work
from schema.events import Reply
from schema.queries.events import OutboxEvent


@dataclass(frozen=True)
class Conversation:
    id: int
    customer_id: int
    status: str  # open | closed
    last_channel: str
    last_message_at: datetime


@dataclass(frozen=True)
class Ticket:
    id: str
    conversation_id: int
    priority: str
    status: str


@dataclass(frozen=True)
class ActiveEscalation:
    id: int
    customer_id: int
    holding_ack_sent: bool


@dataclass
class BatchContext:
    """What load_context read for one batch (replayed messages already removed)."""

    batch: list[Work]  # every message of the batch (its offsets go to flow_progress)
    todo: list[Work]  # the ones not handled yet, customer ids mapped to merge survivors
    names: dict[int, str | None]
    conversations: dict[int, Conversation]  # customer -> open (else latest) conversation
    tickets: dict[int, Ticket]  # conversation id -> active ticket
    active: dict[int, ActiveEscalation]  # customer -> escalation in human hands
    history: dict[int, list[dict]]  # customer -> recent messages, oldest first
    conversation_ids: list[int]  # reserved for conversations this batch opens
    escalation_ids: list[int]  # reserved for escalations this batch opens


@dataclass(frozen=True)
class PlannedTicket:
    id: str
    customer_id: int
    conversation_id: int
    channel: str
    subject: str | None
    category: str
    contact_email: str | None
    contact_name: str | None
    source_inbound_key: str
    created_at: datetime


@dataclass(frozen=True)
class PlannedEscalation:
    id: int
    customer_id: int
    conversation_id: int
    ticket_id: str
    inbound_key: str
    channel: str
    reason: str
    detail: str
    priority: str


@dataclass(frozen=True)
class PlannedMessage:
    """An inbound message row, written already handled."""

    channel: str
    channel_message_id: str
    customer_id: int
    conversation_id: int
    ticket_id: str
    subject: str | None
    body: str
    sentiment: float
    metadata: dict[str, Any]
    occurred_at: datetime
    handled_as: str
    escalation_id: int | None


@dataclass
class BatchPlan:
    """Every write of one batch (persist runs them in one transaction, in this order)."""

    batch: list[Work]
    closed_conversations: list[int] = field(default_factory=list)
    reopened_conversations: list[int] = field(default_factory=list)
    new_conversations: list[Conversation] = field(default_factory=list)
    first_channel: dict[int, str] = field(default_factory=dict)
    touched_conversations: list[Conversation] = field(default_factory=list)
    switches: list[tuple] = field(default_factory=list)
    tickets: list[PlannedTicket] = field(default_factory=list)
    escalations: list[PlannedEscalation] = field(default_factory=list)
    messages: list[PlannedMessage] = field(default_factory=list)
    replies: list[Reply] = field(default_factory=list)
    reply_escalations: list[int | None] = field(default_factory=list)
    holding_sent: list[int] = field(default_factory=list)
    kb_lookups: list[tuple] = field(default_factory=list)
    answered_tickets: list[str] = field(default_factory=list)
    events: list[OutboxEvent] = field(default_factory=list)

    @property
    def inbound_keys(self) -> list[str]:
        return [f"{m.channel}:{m.channel_message_id}" for m in self.messages]
