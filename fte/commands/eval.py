"""`fte eval FILE.jsonl` / `fte eval --bitext PATH`: labelled messages through the same stages
as the support flow (policy, retrieval, agent, formatting) against the running knowledge base.

Input lines: {"id", "channel", "text", "subject"?, "expect_escalate"?, "expect_intent"?}.
The last line printed is one JSON object:
{"n", "escalation": {"precision", "recall", "by_reason"}, "kb": {"hit_at_1", "hit_at_3"},
 "format_violations"}; kb is scored on items with expect_intent that were not escalated.
`--details` prints one JSON line per item first.
"""

from __future__ import annotations

import csv
import json
import sys
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

# The Bitext intents a person handles; the rest are answered from the knowledge base.
BITEXT_ESCALATE_INTENTS = frozenset({"get_refund", "contact_human_agent", "complaint"})
CHANNELS = ("email", "whatsapp", "web")
BATCH = 256
ESCALATION_ACK = ("Thank you for your message. I have passed it to a colleague from our customer "
                  "care team, who will get back to you personally.")


def register(subparsers) -> None:
    p = subparsers.add_parser("eval", help="score policy, retrieval, agent and formatting on labelled messages")
    p.add_argument("file", nargs="?", type=Path, help="JSONL of labelled messages")
    p.add_argument("--bitext", type=Path, help="read the Bitext customer-support CSV instead")
    p.add_argument("--details", action="store_true", help="one JSON line per item before the summary")
    p.add_argument("--limit", type=int, default=0, help="only the first N items")
    p.set_defaults(func=run)


def bitext_items(path: Path) -> Iterator[dict[str, Any]]:
    """Bitext rows as eval items: escalate the three person intents and offensive wording (tag W)."""
    with open(path, newline="", encoding="utf-8") as fh:
        for i, row in enumerate(csv.DictReader(fh)):
            yield {"id": f"bitext-{i}", "channel": CHANNELS[i % len(CHANNELS)],
                   "text": row["instruction"], "expect_intent": row["intent"],
                   "expect_escalate": row["intent"] in BITEXT_ESCALATE_INTENTS or "W" in (row.get("tags") or "")}


def jsonl_items(path: Path) -> Iterator[dict[str, Any]]:
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            item = json.loads(line)
            for key in ("id", "channel", "text"):
                if key not in item:
                    raise ValueError(f"line {n}: {key}: required")
            if item["channel"] not in CHANNELS:
                raise ValueError(f"line {n}: channel: one of {CHANNELS}")
            yield item


def run(args, settings) -> int:
    if bool(args.file) == bool(args.bitext):
        print("give either FILE.jsonl or --bitext PATH", file=sys.stderr)
        return 2
    try:
        items = list(bitext_items(args.bitext) if args.bitext else jsonl_items(args.file))
    except (OSError, ValueError, KeyError) as exc:  # JSONDecodeError is a ValueError
        print(f"cannot read input: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    if args.limit:
        items = items[:args.limit]
    summary, details = evaluate(items, settings)
    if args.details:
        for d in details:
            print(json.dumps(d))
    answered = [d for d in details if d["action"] == "answer" and d.get("expect_intent")]
    right = sum(1 for d in answered if d["kb"] and d["expect_intent"] in d["kb"][0]["intents"])
    actions = Counter(d["action"] for d in details)
    print(f"actions: {dict(actions)}; answers from an article tagged with the expected intent: "
          f"{right}/{len(answered)}", file=sys.stderr)
    print(json.dumps(summary))
    return 0


def evaluate(items: list[dict[str, Any]], settings) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    from flows.agent import AgentRequest, build_agent
    from flows.agent.base import question_text
    from flows.formatting import format_reply, violations
    from flows.policy import decide, load_policy
    from flows.sentiment import score
    from schema.events import Channel, InboundMessage

    policy = load_policy(settings.ESCALATION_POLICY_FILE)
    agent = build_agent(settings)
    kb = agent.kb
    details: list[dict[str, Any]] = []
    for start in range(0, len(items), BATCH):
        batch = items[start:start + BATCH]
        decisions = []
        for item in batch:
            text = f"{item.get('subject') or ''}\n{item['text']}".strip()
            decisions.append(decide(text, sentiment=score(text), trend=None, unresolved_turns=0,
                                    policy=policy))
        requests = []
        for item in batch:
            inbound = InboundMessage(
                channel=Channel(item["channel"]), channel_message_id=f"eval-{item['id']}",
                sender=[{"kind": "email", "value": "eval@example.com"}], subject=item.get("subject"),
                body=item["text"], received_at=datetime.now(UTC))
            requests.append(AgentRequest(inbound=inbound, customer_id=0))
        to_answer = [i for i, d in enumerate(decisions) if d is None]
        results = dict(zip(to_answer, agent.respond_many([requests[i] for i in to_answer])))
        # the same question text the agent searched with (subject + new part of the body)
        hits = dict(zip(to_answer, kb.search_many([question_text(requests[i].inbound) for i in to_answer], k=3)))
        for i, item in enumerate(batch):
            decision, result = decisions[i], results.get(i)
            escalated = decision is not None or (result is not None and result.action == "escalate")
            reason = decision.reason.value if decision else (
                result.reason.value if result and result.reason else None)
            text = ESCALATION_ACK if decision is not None else result.text
            formatted = format_reply(item["channel"], text, customer_name=None,
                                     inbound_subject=item.get("subject") or "Your question",
                                     inbound_metadata={}, previous_contact=None, kind="agent")
            top = hits.get(i, [])
            details.append({
                "id": item["id"], "channel": item["channel"],
                "expect_escalate": bool(item.get("expect_escalate", False)), "escalated": escalated,
                "reason": reason, "expect_intent": item.get("expect_intent"),
                "action": "escalate" if decision else result.action,
                "kb": [{"slug": h.slug, "intents": list(h.intents), "score": h.score} for h in top],
                "violations": violations(item["channel"], formatted),
            })
    return summarize(details), details


def summarize(details: list[dict[str, Any]]) -> dict[str, Any]:
    tp = sum(1 for d in details if d["escalated"] and d["expect_escalate"])
    fp = sum(1 for d in details if d["escalated"] and not d["expect_escalate"])
    fn = sum(1 for d in details if not d["escalated"] and d["expect_escalate"])
    by_reason: dict[str, dict[str, Any]] = {}
    counts = Counter(d["reason"] for d in details if d["escalated"])
    for reason, n in sorted(counts.items(), key=lambda kv: -kv[1]):
        correct = sum(1 for d in details if d["escalated"] and d["reason"] == reason and d["expect_escalate"])
        by_reason[reason] = {"n": n, "precision": round(correct / n, 4)}
    scored = [d for d in details if d.get("expect_intent") and not d["escalated"]]

    def hit_at(k: int) -> float | None:
        if not scored:
            return None
        hits = sum(1 for d in scored if any(d["expect_intent"] in h["intents"] for h in d["kb"][:k]))
        return round(hits / len(scored), 4)

    return {
        "n": len(details),
        "escalation": {
            "precision": round(tp / (tp + fp), 4) if tp + fp else None,
            "recall": round(tp / (tp + fn), 4) if tp + fn else None,
            "by_reason": by_reason,
        },
        "kb": {"hit_at_1": hit_at(1), "hit_at_3": hit_at(3)},
        "format_violations": sum(len(d["violations"]) for d in details),
    }
