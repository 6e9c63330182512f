"""`fte eval FILE.jsonl` / `fte eval --bitext PATH`: labelled messages through the same stages
as the support flow (policy, retrieval, agent, formatting) against the running knowledge base.

Input lines: {"id", "channel", "text", "subject"?, "expect_escalate"?, "expect_intent"?,
"expect_reason"?, "history"?: [{"direction", "body"}, ...]} (history: earlier turns, oldest
first, so multi-turn cases are evaluated). `--bitext PATH` and `--hint3 DIR` read the public
sets instead (`--split heldout` keeps only the parts the routing model never trains on).
The last line printed is one JSON object:
{"n", "escalation": {"precision", "recall", "by_reason", "recall_by_reason"},
 "kb": {"hit_at_1", "hit_at_3"}, "resolution": {"answered_right", "answered_wrong", "asked"},
 "out_of_scope": {"n", "answered"}, "format_violations"}; kb is scored on items with
expect_intent that were not escalated; resolution (shares) over items with an expect_intent:
answered from an article tagged with it / from another article / with a clarifying question;
out_of_scope over items with "expect_intent": null and "expect_escalate": false.
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
    p.add_argument("--hint3", type=Path, help="read the HINT3 *_train.csv files of a folder instead")
    p.add_argument("--split", choices=("all", "train", "heldout"), default="all",
                   help="with --bitext/--hint3: the routing model's training part or held-out part")
    p.add_argument("--details", action="store_true", help="one JSON line per item before the summary")
    p.add_argument("--limit", type=int, default=0, help="only the first N items")
    p.set_defaults(func=run)


def bitext_items(path: Path, split: str = "all") -> Iterator[dict[str, Any]]:
    """Bitext rows as eval items: escalate the three person intents and offensive wording (tag W)."""
    from flows.routing_data import BITEXT_ESCALATIONS, bitext_examples

    examples = bitext_examples(path)
    with open(path, newline="", encoding="utf-8") as fh:
        for i, (row, ex) in enumerate(zip(csv.DictReader(fh), examples)):
            if not _in_split(ex.heldout, split):
                continue
            escalate = row["intent"] in BITEXT_ESCALATE_INTENTS or "W" in (row.get("tags") or "")
            yield {"id": f"bitext-{i}", "channel": CHANNELS[i % len(CHANNELS)],
                   "text": row["instruction"],
                   "expect_intent": None if row["intent"] in BITEXT_ESCALATIONS else row["intent"],
                   "expect_reason": BITEXT_ESCALATIONS.get(row["intent"]),
                   "expect_escalate": escalate}


def hint3_items(directory: Path, split: str = "all") -> Iterator[dict[str, Any]]:
    """HINT3 train rows with their labels mapped onto the shop's (flows/routing_data.py)."""
    from flows.routing_data import ESCALATE, INTENT, hint3_examples

    for i, ex in enumerate(hint3_examples(directory)):
        if not _in_split(ex.heldout, split):
            continue
        yield {"id": f"{ex.source}-{i}", "channel": CHANNELS[i % len(CHANNELS)], "text": ex.text,
               "expect_intent": ex.label[len(INTENT):] if ex.label.startswith(INTENT) else None,
               "expect_reason": ex.label[len(ESCALATE):] if ex.label.startswith(ESCALATE) else None,
               "expect_escalate": ex.label.startswith(ESCALATE)}


def _in_split(heldout: bool, split: str) -> bool:
    return split == "all" or (split == "heldout") == heldout


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


class EmptyKnowledgeBase(RuntimeError):
    pass


def run(args, settings) -> int:
    if sum(bool(x) for x in (args.file, args.bitext, args.hint3)) != 1:
        print("give one of FILE.jsonl, --bitext PATH or --hint3 DIR", file=sys.stderr)
        return 2
    try:
        if args.bitext:
            items = list(bitext_items(args.bitext, args.split))
        elif args.hint3:
            items = list(hint3_items(args.hint3, args.split))
        else:
            items = list(jsonl_items(args.file))
    except (OSError, ValueError, KeyError) as exc:  # JSONDecodeError is a ValueError
        print(f"cannot read input: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    if args.limit:
        items = items[:args.limit]
    try:
        summary, details = evaluate(items, settings, heldout_router(args, settings))
    except EmptyKnowledgeBase as exc:
        print(f"fte eval: {exc}", file=sys.stderr)
        return 2
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


def heldout_router(args, settings):
    """For `--split heldout`: a model that never saw the held-out parts. The installed model
    is used when it was trained with `--exclude-heldout`; otherwise (the shipped model learns
    from everything) one is trained here without them, without CV (seconds)."""
    if args.split != "heldout" or not (args.bitext or args.hint3):
        return None
    from flows import routing
    from flows.routing_data import load_examples
    from fte.commands.model import WRITTEN_EXAMPLES

    path = routing.model_path(settings)
    if path.exists():
        installed = routing.load(path)
        if not installed.meta.get("includes_heldout", False):
            return installed
    print("training a model without the held-out parts for this evaluation", file=sys.stderr)
    return routing.train(load_examples(settings.SHARED_DATA_DIR, WRITTEN_EXAMPLES), cv_folds=0)


def evaluate(items: list[dict[str, Any]], settings, router=None) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Items through the policy (with the routing model), the agent and formatting.
    `router`: a loaded routing model; default the installed one (none: rules and retrieval)."""
    from flows.agent import AgentRequest, HistoryItem, build_agent
    from flows.formatting import format_reply, violations
    from flows.policy import decide, load_policy, prime_routes, with_router
    from flows.routing import load_router
    from flows.sentiment import Trend, score
    from schema.events import Channel, InboundMessage

    router = router if router is not None else load_router(settings)
    policy = with_router(load_policy(settings.ESCALATION_POLICY_FILE), router)
    agent = build_agent(settings, router)
    if not _articles(agent.kb):
        # Every question would get a clarifying question: figures that mean nothing.
        raise EmptyKnowledgeBase("the knowledge base is empty: load it first "
                                 "(`fte kb load flows/kb_demo`, or `fte up`)")
    details: list[dict[str, Any]] = []
    now = datetime.now(UTC)
    for start in range(0, len(items), BATCH):
        batch = items[start:start + BATCH]
        decisions, requests = [], []
        prime_routes(policy, [f"{item.get('subject') or ''}\n{item['text']}".strip() for item in batch])
        for item in batch:
            text = f"{item.get('subject') or ''}\n{item['text']}".strip()
            history = item.get("history") or []
            trend = Trend()
            for h in history:
                if h["direction"] == "inbound":
                    trend = trend.update(score(h["body"]))
            trend = trend.update(score(text))
            clarifications = 0
            for h in reversed(history):
                if h["direction"] != "outbound":
                    continue
                if "To make sure I point you" not in h["body"]:
                    break
                clarifications += 1
            decisions.append(decide(text, sentiment=score(text), trend=trend,
                                    unresolved_turns=clarifications, policy=policy))
            inbound = InboundMessage(
                channel=Channel(item["channel"]), channel_message_id=f"eval-{item['id']}",
                sender=[{"kind": "email", "value": "eval@example.com"}], subject=item.get("subject"),
                body=item["text"], received_at=now)
            requests.append(AgentRequest(inbound=inbound, customer_id=0, history=[
                HistoryItem(item["channel"], h["direction"], None, h["body"], now) for h in history]))
        to_answer = [i for i, d in enumerate(decisions) if d is None]
        results = dict(zip(to_answer, agent.respond_many([requests[i] for i in to_answer])))
        articles = _articles(agent.kb)
        for i, item in enumerate(batch):
            decision, result = decisions[i], results.get(i)
            escalated = decision is not None or (result is not None and result.action == "escalate")
            reason = decision.reason.value if decision else (
                result.reason.value if result and result.reason else None)
            text = ESCALATION_ACK if escalated else result.text
            formatted = format_reply(item["channel"], text, customer_name=None,
                                     inbound_subject=item.get("subject") or "Your question",
                                     inbound_metadata={}, previous_contact=None, kind="agent")
            slugs = result.kb_slugs if result else []
            details.append({
                "id": item["id"], "channel": item["channel"],
                "expect_escalate": bool(item.get("expect_escalate", False)), "escalated": escalated,
                "reason": reason, "expect_reason": item.get("expect_reason"),
                "expect_intent": item.get("expect_intent"),
                "expect_out_of_scope": "expect_intent" in item and item["expect_intent"] is None
                and not item.get("expect_escalate", False),
                "action": "escalate" if decision else result.action,
                # the articles the agent considered, best first (the answered one first)
                "kb": [{"slug": s, "intents": articles.get(s, []),
                        "score": result.kb_top_score if n == 0 else None}
                       for n, s in enumerate(slugs)],
                "violations": violations(item["channel"], formatted),
            })
    return summarize(details), details


def _articles(kb) -> dict[str, list[str]]:
    """slug -> intents, from the agent's in-process index."""
    return {r[1]: list(r[5] or ()) for r in kb.index().rows}


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

    recall_by_reason = {}
    for reason in sorted({d["expect_reason"] for d in details if d.get("expect_reason")}):
        wanted = [d for d in details if d.get("expect_reason") == reason]
        recall_by_reason[reason] = {"n": len(wanted), "recall": round(
            sum(d["escalated"] for d in wanted) / len(wanted), 4)}
    with_intent = [d for d in details if d.get("expect_intent")]

    def share(pred) -> float | None:
        return round(sum(1 for d in with_intent if pred(d)) / len(with_intent), 4) if with_intent else None

    def right(d) -> bool:
        return d["action"] == "answer" and bool(d["kb"]) and d["expect_intent"] in d["kb"][0]["intents"]

    oos = [d for d in details if d.get("expect_out_of_scope")]
    return {
        "n": len(details),
        "escalation": {
            "precision": round(tp / (tp + fp), 4) if tp + fp else None,
            "recall": round(tp / (tp + fn), 4) if tp + fn else None,
            "by_reason": by_reason,
            "recall_by_reason": recall_by_reason,
        },
        "kb": {"hit_at_1": hit_at(1), "hit_at_3": hit_at(3)},
        "resolution": {
            "answered_right": share(right),
            "answered_wrong": share(lambda d: d["action"] == "answer" and not right(d)),
            "asked": share(lambda d: d["action"] == "clarify"),
        },
        "out_of_scope": {"n": len(oos), "answered": round(
            sum(1 for d in oos if d["action"] == "answer") / len(oos), 4) if oos else None},
        "format_violations": sum(len(d["violations"]) for d in details),
    }
