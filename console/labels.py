"""Leads' labels on how the agent handled a message (stored in `routing_labels`, migration 010).

A label becomes a training example on the next `fte model train` (flows/routing_data.py):
- wrong answer: the message is about the article the lead picks (its first intent);
- needless escalation: about the article picked, or out of scope when none is;
- missed escalation: the escalation reason the lead picks.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from console import data
from schema.queries import routing as q

VERDICTS = {"wrong_answer": "Answer was wrong", "needless_escalation": "Escalation was needless",
            "missed_escalation": "Should have been escalated", "right": "Handled right"}
REASONS = ("refund", "human_requested", "complaint", "legal", "pricing")


def recent_handled(days: float = 7, limit: int = 200) -> pd.DataFrame:
    return data.frame(q.RECENT_HANDLED, since=data.since(24 * days), limit=limit)


def labels(limit: int = 200) -> pd.DataFrame:
    return data.frame(q.LABELS, limit=limit)


def articles() -> pd.DataFrame:
    return data.frame(q.ARTICLE_INTENTS)


def not_confident(days: float = 7, limit: int = 30) -> pd.DataFrame:
    return data.frame(q.KB_NOT_CONFIDENT, since=data.since(24 * days), limit=limit)


def training_label(verdict: str, *, slug: str | None, intents: list[str], reason: str | None,
                   handled_as: str | None = None) -> str:
    """The routing label a verdict stands for; ValueError names what is missing."""
    if verdict not in VERDICTS:
        raise ValueError(f"verdict: one of {', '.join(VERDICTS)}")
    if verdict == "missed_escalation":
        if reason not in REASONS:
            raise ValueError(f"reason: one of {', '.join(REASONS)}")
        return f"escalate:{reason}"
    if verdict == "right" and reason in REASONS:
        return f"escalate:{reason}"
    if slug:
        if not intents:
            raise ValueError(f"article {slug!r} has no intents to learn from")
        return f"intent:{intents[0]}"
    if verdict == "wrong_answer":
        raise ValueError("article: pick the article that answers the message")
    return "out_of_scope"


def save_label(user: str, row: dict[str, Any], verdict: str, *, slug: str | None = None,
               reason: str | None = None) -> int:
    from console.actions import audit

    intents: list[str] = []
    if slug:
        found = articles()
        match = found[found["slug"] == slug]
        if match.empty:
            raise ValueError(f"article {slug!r} not found")
        intents = list(match["intents"].iloc[0] or [])
    label = training_label(verdict, slug=slug, intents=intents, reason=reason)
    with data.connection() as conn, conn.transaction():
        new_id = conn.execute(q.UPSERT_LABEL, {
            "inbound_key": row["inbound_key"], "text": str(row["text"])[:4000], "verdict": verdict,
            "label": label, "slug": slug, "handled_as": row.get("handled_as"), "user": user,
        }).fetchone()
        audit(conn, user, "routing_label", f"message:{row['inbound_key']}",
              {"verdict": verdict, "label": label})
    data.invalidate()
    return int(new_id["id"] if isinstance(new_id, dict) else new_id[0])
