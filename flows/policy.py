"""Escalation policy, applied before any agent so no agent failure can skip it.

`flows/escalation_policy.yaml` (path in settings ESCALATION_POLICY_FILE) holds a short list
of must-never-miss rules (self-harm, legal threats and violence, profanity), the learned
route's escalation threshold, anger (sentiment threshold or a falling trend) and the
unresolved-turns limit. Refund requests, requests for a person, complaints and pricing are
the routing model's labels (`flows/routing.py`): `with_router` attaches the loaded model.
`decide` is pure for a given model: same inputs, same decision.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path

import yaml

from flows.sentiment import Trend
from schema.events import EscalationReason

PRIORITIES = ("low", "normal", "high", "urgent")
MAX_MATCHED_CHARS = 10_000
ROUTE_PRIORITY = {"legal": "urgent", "human_requested": "high", "refund": "high",
                  "complaint": "normal", "pricing": "normal"}  # regexes over a bounded prefix: no pathological cost on huge bodies


@dataclass(frozen=True)
class PolicyDecision:
    reason: EscalationReason
    detail: str
    priority: str


@dataclass(frozen=True)
class Rule:
    reason: EscalationReason
    priority: str
    patterns: tuple[re.Pattern, ...]
    unless: tuple[re.Pattern, ...] = ()

    def match(self, text: str) -> str | None:
        """The matched phrase, or None when no pattern matches or a veto does."""
        for pattern in self.patterns:
            m = pattern.search(text)
            if m:
                if any(v.search(text) for v in self.unless):
                    return None
                return m.group(0).strip()
        return None


@dataclass(frozen=True)
class Policy:
    rules: tuple[Rule, ...]
    anger_threshold: float = -0.75
    anger_on_falling_trend: bool = True
    unresolved_turns: int = 3
    route_escalate_min: float = 0.35
    route_escalate_by_reason: tuple[tuple[str, float], ...] = ()  # per-reason overrides
    router: object | None = None  # flows.routing.Router; None: rules, anger and turns only


def _compile(patterns: list[str] | None) -> tuple[re.Pattern, ...]:
    return tuple(re.compile(p, re.IGNORECASE) for p in (patterns or []))


def parse_policy(doc: dict) -> Policy:
    """Build a Policy from the YAML document; errors name the offending rule."""
    rules = []
    for i, raw in enumerate(doc.get("rules") or []):
        try:
            reason = EscalationReason(raw["reason"])
        except (KeyError, ValueError) as exc:
            raise ValueError(f"rules[{i}].reason: {exc}") from exc
        priority = raw.get("priority", "normal")
        if priority not in PRIORITIES:
            raise ValueError(f"rules[{i}].priority: must be one of {PRIORITIES}")
        try:
            rules.append(Rule(reason, priority, _compile(raw.get("patterns")), _compile(raw.get("unless"))))
        except re.error as exc:
            raise ValueError(f"rules[{i}] ({reason.value}): bad pattern: {exc}") from exc
    anger = doc.get("anger") or {}
    return Policy(
        rules=tuple(rules),
        anger_threshold=float(anger.get("sentiment_below", -0.75)),
        anger_on_falling_trend=bool(anger.get("falling_trend", True)),
        unresolved_turns=int(doc.get("unresolved_turns", 3)),
        route_escalate_min=float((doc.get("route") or {}).get("escalate_min", 0.35)),
        route_escalate_by_reason=tuple(
            (str(EscalationReason(k).value), float(v))
            for k, v in ((doc.get("route") or {}).get("escalate_min_by_reason") or {}).items()),
    )


def policy_text(msg) -> str:
    """What the policy reads of an inbound message: subject and body."""
    return msg.body if not msg.subject else f"{msg.subject}\n{msg.body}"


def prime_routes(policy: Policy, texts: list[str]) -> None:
    """Route a whole batch in one model call before deciding message by message (the
    per-message `decide` then reads the router's cache)."""
    if policy.router is not None and texts:
        policy.router.route_many([(t or "")[:MAX_MATCHED_CHARS] for t in texts])


def with_router(policy: Policy, router) -> Policy:
    """The policy with the routing model in front of anger and the turn limit."""
    return replace(policy, router=router)


@lru_cache(maxsize=8)
def _load(path: str, mtime: float) -> Policy:
    with open(path, encoding="utf-8") as fh:
        return parse_policy(yaml.safe_load(fh) or {})


def load_policy(path: str | Path) -> Policy:
    """Load (and cache until the file changes) the policy file."""
    p = Path(path)
    return _load(str(p), p.stat().st_mtime)


def decide(
    text: str,
    *,
    sentiment: float | None,
    trend: Trend | None,
    unresolved_turns: int,
    policy: Policy,
) -> PolicyDecision | None:
    """The escalation this message requires, or None to let the agent answer.

    The must-never-miss rules come first, then anger, then the learned route's escalation
    labels, then the turn limit.
    """
    text = (text or "")[:MAX_MATCHED_CHARS]
    for rule in policy.rules:
        phrase = rule.match(text)
        if phrase is not None:
            return PolicyDecision(rule.reason, f"matched {phrase!r}", rule.priority)
    if sentiment is not None and sentiment < policy.anger_threshold:
        return PolicyDecision(EscalationReason.ANGER, f"sentiment {sentiment:+.2f}", "high")
    if policy.router is not None:
        # The likeliest escalation label, even when an answerable intent is likelier: a
        # missed request for a person costs more than a needless hand-over.
        route = policy.router.route(text)
        by_reason = dict(policy.route_escalate_by_reason)
        label, p = next(((lb, p) for lb, p in route.ranked if lb.startswith("escalate:")
                         and p >= by_reason.get(lb.split(":", 1)[1], policy.route_escalate_min)),
                        (None, 0.0))
        if label:
            reason = label.split(":", 1)[1]
            return PolicyDecision(EscalationReason(reason), f"routed {label} ({p:.2f})",
                                  ROUTE_PRIORITY.get(reason, "normal"))
    if policy.anger_on_falling_trend and trend is not None and trend.falling:
        return PolicyDecision(
            EscalationReason.ANGER, f"sentiment falling (mean {trend.mean:+.2f})", "high"
        )
    if policy.unresolved_turns and unresolved_turns >= policy.unresolved_turns:
        return PolicyDecision(
            EscalationReason.UNRESOLVED, f"unresolved after {unresolved_turns} turns", "normal"
        )
    return None
