"""Types shared by the agents and the support flow."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol

from schema.events import EscalationReason, InboundMessage

Action = Literal["answer", "clarify", "escalate"]


@dataclass(frozen=True)
class HistoryItem:
    channel: str
    direction: str  # "inbound" | "outbound"
    author: str | None
    body: str
    occurred_at: datetime


@dataclass(frozen=True)
class PreviousContact:
    channel: str
    occurred_at: datetime
    subject_or_summary: str


@dataclass(frozen=True)
class AgentRequest:
    inbound: InboundMessage
    customer_id: int
    customer_name: str | None = None
    history: list[HistoryItem] = field(default_factory=list)  # oldest first, last 20
    previous_contact: PreviousContact | None = None


@dataclass(frozen=True)
class AgentResult:
    """What to do with a message. For "answer" and "clarify", `text` is the reply to send
    (unformatted; `format_reply` adds the channel style). For "escalate", `text` is a note
    for the human colleague; the customer gets the flow's acknowledgement instead."""

    action: Action
    text: str
    reason: EscalationReason | None = None
    kb_slugs: list[str] = field(default_factory=list)
    kb_top_score: float | None = None
    kb_hit: bool = False
    tokens: int = 0
    provider: str = "local"

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["reason"] = self.reason.value if self.reason else None
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> AgentResult:
        return cls(
            action=d["action"], text=d["text"],
            reason=EscalationReason(d["reason"]) if d.get("reason") else None,
            kb_slugs=list(d.get("kb_slugs") or []), kb_top_score=d.get("kb_top_score"),
            kb_hit=bool(d.get("kb_hit")), tokens=int(d.get("tokens") or 0),
            provider=d.get("provider") or "local",
        )


class Agent(Protocol):
    """Thread-safe: the flow calls `respond` from a thread pool."""

    def respond(self, req: AgentRequest) -> AgentResult: ...

    def respond_many(self, reqs: Sequence[AgentRequest]) -> list[AgentResult]: ...


_QUOTED = re.compile(r"^\s*>.*$", re.MULTILINE)
_REPLY_HEADER = re.compile(r"\n\s*On .{5,200}wrote:\s*\n.*", re.DOTALL)
_SIGNATURE = re.compile(r"\n--\s*\n.*", re.DOTALL)


def question_text(inbound: InboundMessage, max_chars: int = 2_000) -> str:
    """What the customer is asking: the subject (unless it is a bare Re:) and the new part
    of the body, without quoted earlier mail or a signature."""
    body = _REPLY_HEADER.sub("\n", inbound.body)
    body = _SIGNATURE.sub("\n", _QUOTED.sub("", body))
    subject = re.sub(r"^\s*((re|fwd?|aw)\s*:\s*)+", "", inbound.subject or "", flags=re.IGNORECASE)
    text = f"{subject}\n{body}" if subject and subject.lower() not in body.lower() else body
    return " ".join(text.split())[:max_chars]
