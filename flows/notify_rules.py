"""Which notifications an escalation or alert causes: pure rules over `flows/notify.yaml`.

A `Notice` names its target (email/slack), recipient, text and a dedupe key that is the same
every time the same event is seen, so the sender can record it once and send it once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator

from flows.sla import PRIORITY_RANK, parse_duration
from schema.events import Alert, Escalation

Target = Literal["email", "slack"]
Priority = Literal["low", "normal", "high", "urgent"]


class NotifyConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    escalations: dict[Priority, list[Target]] = Field(
        default_factory=lambda: {"urgent": ["slack", "email"], "high": ["slack", "email"],
                                 "normal": ["slack"], "low": []})
    alerts: dict[str, list[Target]] = Field(default_factory=lambda: {"sla_breach": ["slack", "email"]})
    sla_breach_min_priority: Priority = "low"
    max_event_age: timedelta = timedelta(hours=6)

    @field_validator("max_event_age", mode="before")
    @classmethod
    def _age(cls, value) -> timedelta:
        return parse_duration(value)


def load_notify_config(path: Path | str) -> NotifyConfig:
    return NotifyConfig.model_validate(yaml.safe_load(Path(path).read_text()) or {})


@dataclass(frozen=True)
class Notice:
    dedupe_key: str
    source: Literal["escalation", "alert"]
    target: Target
    recipient: str  # an address for email, "webhook" for slack
    priority: str
    subject: str
    text: str
    event_at: datetime


def _recipients(target: Target, emails: list[str]) -> list[str]:
    return list(emails) if target == "email" else ["webhook"]


def escalation_notices(esc: Escalation, config: NotifyConfig, emails: list[str]) -> list[Notice]:
    targets = config.escalations.get(esc.priority, [])
    subject = f"[{esc.priority.upper()}] escalation {esc.escalation_id} on {esc.channel.value}: {esc.reason.value}"
    lines = [subject, f"customer {esc.customer_id}, ticket {esc.ticket_id or '-'}"]
    if esc.detail:
        lines.append(esc.detail[:500])
    return [Notice(f"escalation:{esc.escalation_id}:{t}:{r}", "escalation", t, r, esc.priority,
                   subject, "\n".join(lines), esc.created_at)
            for t in targets for r in _recipients(t, emails)]


def alert_notices(alert: Alert, config: NotifyConfig, emails: list[str]) -> list[Notice]:
    targets = config.alerts.get(alert.kind, [])
    detail = alert.detail or {}
    priority = str(detail.get("priority") or ("urgent" if alert.kind == "sla_breach" else "high"))
    if alert.kind == "sla_breach" and \
            PRIORITY_RANK.get(priority, 1) < PRIORITY_RANK[config.sla_breach_min_priority]:
        return []
    subject_of = detail.get("subject", "")
    subject = f"[ALERT] {alert.kind} {subject_of}: {alert.value:g} (threshold {alert.threshold:g})"
    text = subject + "".join(f"\n{k}: {v}" for k, v in sorted(detail.items()) if k != "subject")
    base = f"alert:{alert.kind}:{detail.get('bucket', alert.raised_at.isoformat())}:{subject_of}"
    return [Notice(f"{base}:{t}:{r}", "alert", t, r, priority, subject, text, alert.raised_at)
            for t in targets for r in _recipients(t, emails)]


def is_stale(notice: Notice, now: datetime, config: NotifyConfig) -> bool:
    return now - notice.event_at > config.max_event_age
