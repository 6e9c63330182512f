"""Answer or do not: the pure decision between answering, asking, and handing over.

Inputs: the message's learned route (`flows/routing.py`), the retrieval hits, the
conversation so far. The rules, in order:

1. Multi-turn signals, each escalated with its reason named: the customer says the last
   answer did not help, or asks the same question again (`unresolved`); we already asked a
   clarifying question and are still not confident (`low_confidence`).
2. Answer only when the model and retrieval agree with confidence: the route's intent is
   one of the best article's intents (after re-ranking hits by the route's probability of
   their intents), the route is at least `answer_min` sure and retrieval at least
   `retrieval_min`. An article marked `escalate:` hands over instead of being pasted.
3. Otherwise ask ONE specific question: about the article the model leans to, or which of
   two, or (out of scope / nothing close) what the customer needs from the shop.

Thresholds were set on `flows/eval/support_samples.jsonl` and the training data, never on
the held-out sets.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from flows.embeddings import tokens
from flows.knowledge import KbHit
from flows.routing import Route

CLARIFY_OPENING = "To make sure I point you to the right answer"
SCOPE_TEXT = ("I can help with orders, delivery, returns and refunds, payments, invoices and "
              "your account")
RERANK_WEIGHT = 0.5  # how much the route's belief in a hit's intents adds to its score


@dataclass(frozen=True)
class Thresholds:
    answer_min: float = 0.45      # route confidence in the answered intent
    retrieval_min: float = 0.20   # hybrid score of the article answered from
    strong_retrieval: float = 0.45  # ...or retrieval this sure, and the article's intent the
    support_min: float = 0.25       # model's best intent with at least this probability
    lean_min: float = 0.20        # route confidence to name one article in the question
    choose_min: float = 0.65      # route confidence at which its intent chooses the article
                                  # (grouped CV on the training part, README)
    same_question: float = 0.75   # word overlap (Jaccard) that counts as asking again


@dataclass(frozen=True)
class Turn:
    direction: str  # inbound | outbound
    body: str


@dataclass(frozen=True)
class Resolution:
    action: str                 # answer | clarify | escalate
    hit: KbHit | None = None    # the article answered from
    text: str = ""              # the clarifying question, or the escalation note
    reason: str | None = None   # escalation reason
    hits: tuple[KbHit, ...] = ()


# "That didn't help": the customer says the last answer did not solve it. Only read when we
# answered before (otherwise these words are just part of a first message).
_NOT_HELPED = re.compile(
    r"\b(did ?n[o']?t|does ?n[o']?t|do ?n[o']?t|has ?n[o']?t|not|no|never)\s+(really\s+)?"
    r"(help|helpful|help(ed|s)|answer(ed)?|work(ed|s)?|solve[ds]?|fix(ed)?)\b"
    r"|\b(useless|not what i asked|still (not|doesn.t|can.t|cannot|no)\b|same problem)",
    re.IGNORECASE)


def rerank(hits: Sequence[KbHit], route: Route | None, th: Thresholds = Thresholds()) -> list[KbHit]:
    """Hits by retrieval score plus the route's belief in their intents; when the model is
    confident in one intent, that intent's best-retrieved article comes first: the model
    reads the whole message, retrieval only its words ("ship to Canada ... how long" shares
    more words with the refund policy than with shipping options)."""
    if route is None:
        return list(hits)
    ranked = sorted(hits, key=lambda h: -(h.score + RERANK_WEIGHT * route.probability_of_intents(h.intents)))
    if route.intent is not None and route.confidence >= th.choose_min:
        own = next((h for h in ranked if route.intent in h.intents), None)
        if own is not None:
            ranked = [own] + [h for h in ranked if h is not own]
    return ranked


def already_asked(history: Sequence[Turn]) -> bool:
    """Our last reply was a clarifying question."""
    outbound = [t for t in history if t.direction == "outbound"]
    return bool(outbound) and CLARIFY_OPENING in outbound[-1].body


def multi_turn_signal(question: str, history: Sequence[Turn], th: Thresholds) -> tuple[str, str] | None:
    """(reason, detail) when the conversation so far says a person should take over."""
    outbound = [t for t in history if t.direction == "outbound"]
    if not outbound:
        return None
    answered_before = any(CLARIFY_OPENING not in t.body for t in outbound)
    if answered_before and _NOT_HELPED.search(question[:500]):
        return "unresolved", "the customer says the previous answer did not help"
    words = set(tokens(question))
    if answered_before and len(words) >= 2:
        for t in history:
            if t.direction != "inbound":
                continue
            earlier = set(tokens(t.body))
            if earlier and len(words & earlier) / len(words | earlier) >= th.same_question:
                return "unresolved", "the customer asked the same question again"
    return None


def resolve(question: str, route: Route | None, hits: Sequence[KbHit], history: Sequence[Turn],
            th: Thresholds = Thresholds()) -> Resolution:
    signal = multi_turn_signal(question, history, th)
    ranked = rerank(hits, route, th)
    if signal:
        return Resolution("escalate", None, signal[1], signal[0], tuple(ranked))
    top = ranked[0] if ranked else None
    if top is not None and _agree(route, top, th):
        if top.escalate:
            return Resolution("escalate", top, f"matched the article {top.slug!r}, which hands "
                              "over to a person", top.escalate, tuple(ranked))
        return Resolution("answer", top, hits=tuple(ranked))
    if already_asked(history):
        best = f" (best guess: {top.slug})" if top else ""
        return Resolution("escalate", None, "no confident answer after a clarifying question" + best,
                          "low_confidence", tuple(ranked))
    return Resolution("clarify", None, clarifying_question(route, ranked, th), None, tuple(ranked))


def _agree(route: Route | None, top: KbHit, th: Thresholds) -> bool:
    if route is None:  # no model trained: retrieval alone, with the old, stricter bar
        return top.score >= 0.60
    if route.intent is not None and route.intent in top.intents and route.confidence >= th.choose_min:
        return True  # the model is sure and retrieval found the article (rerank put it first)
    if top.score < th.retrieval_min:
        return False
    if route.intent is not None and route.intent in top.intents and route.confidence >= th.answer_min:
        return True
    # retrieval is sure and the model's best intent (out of scope and escalations aside) is
    # the article's, with real support: both point at the same article
    best_intent = next(((label, p) for label, p in route.ranked if label.startswith("intent:")), None)
    return (top.score >= th.strong_retrieval and best_intent is not None
            and best_intent[0][len("intent:"):] in top.intents and best_intent[1] >= th.support_min)


def clarifying_question(route: Route | None, ranked: Sequence[KbHit], th: Thresholds) -> str:
    """One specific question: the article the model leans to, or which of two, or scope."""
    if route is not None and not route.out_of_scope:
        leaning = [h for h in ranked if route.probability_of_intents(h.intents) >= th.lean_min
                   and not h.escalate]
        if len(leaning) >= 2:
            return (f"{CLARIFY_OPENING}: is your question about \"{leaning[0].title}\" or "
                    f"\"{leaning[1].title}\"?")
        if leaning:
            return f"{CLARIFY_OPENING}: is your question about \"{leaning[0].title}\"?"
    return (f"{CLARIFY_OPENING}, could you tell me what you need? {SCOPE_TEXT} - for example "
            "your order number and what you would like to happen.")
