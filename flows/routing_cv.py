"""Grouped cross-validation of the whole decision (policy + route + retrieval + answer or
not) on the TRAINING part only, so settings are chosen without looking at held-out data.

Each fold trains a routing model on the other folds, then runs its messages through the
escalation policy and the local agent over an in-memory index of the demo articles (the
same `KbIndex` the flow keeps hot, built from `flows/kb_demo/` with the local embedder), and
scores them as `fte eval` does. `python -m flows.routing_cv` prints one JSON line per source.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from flows.knowledge import KbIndex, chunk_body, read_articles
from flows.routing_data import ESCALATE, INTENT, OUT_OF_SCOPE, Example

REPO = Path(__file__).resolve().parents[1]


class MemoryKb:
    """The agents' view of a knowledge base (`index`, `search_many`, `embedder`) over
    articles read from a folder; no database."""

    def __init__(self, directory: Path, embedder):
        rows, n = [], 0
        for a in read_articles(directory):
            chunks = chunk_body(a.body)
            vectors = embedder.embed([f"{a.title}\n{c}" for c in chunks])
            for i, (chunk, v) in enumerate(zip(chunks, vectors)):
                n += 1
                rows.append((n, a.slug, i, a.title, chunk, list(a.intents), a.escalate, v))
        self.embedder = embedder
        self._index = KbIndex(rows, ("memory", len(rows)))

    def index(self) -> KbIndex:
        return self._index

    def search_many(self, queries: Sequence[str], k: int = 3, intents=None):
        return self._index.search_many(queries, embedder=self.embedder, k=k, intents=intents)


def offensive_bitext(data: Path) -> frozenset[str]:
    """Bitext rows tagged W (offensive wording): `fte eval` expects a person for them."""
    import csv

    path = Path(data) / "bitext" / "bitext_dev.csv"
    if not path.exists():
        return frozenset()
    with open(path, newline="", encoding="utf-8") as fh:
        return frozenset(r["instruction"] for r in csv.DictReader(fh) if "W" in (r.get("tags") or ""))


def expected(e: Example, offensive: frozenset[str] = frozenset()) -> dict[str, Any]:
    return {"expect_intent": e.label[len(INTENT):] if e.label.startswith(INTENT) else None,
            "expect_reason": e.label[len(ESCALATE):] if e.label.startswith(ESCALATE) else None,
            "expect_escalate": e.label.startswith(ESCALATE)
            or (e.source == "bitext" and e.text in offensive)}


def decide_all(examples: list[Example], router, kb, policy, thresholds=None,
               offensive: frozenset[str] = frozenset()) -> list[dict[str, Any]]:
    """Each example through the policy then the local agent: one detail dict per example."""
    from flows.agent import AgentRequest
    from flows.agent.local import LocalAgent
    from flows.policy import decide, prime_routes, with_router
    from flows.resolution import Thresholds
    from flows.sentiment import Trend, score
    from schema.events import Channel, InboundMessage

    policy = with_router(policy, router)
    agent = LocalAgent(kb, router, thresholds=thresholds or Thresholds())
    texts = [e.text for e in examples]
    prime_routes(policy, texts)
    now = datetime.now(UTC)
    out, pending = [], []
    for i, (e, text) in enumerate(zip(examples, texts)):
        s = score(text)
        d = decide(text, sentiment=s, trend=Trend().update(s), unresolved_turns=0, policy=policy)
        out.append({**expected(e, offensive), "source": e.source.split(":")[0], "text": text,
                    "action": "escalate" if d else None, "escalated": d is not None,
                    "reason": d.reason.value if d else None, "kb": []})
        if d is None:
            pending.append((i, AgentRequest(inbound=InboundMessage(
                channel=Channel("web"), channel_message_id=f"cv-{i}",
                sender=[{"kind": "email", "value": "cv@example.com"}], subject=None, body=text,
                received_at=now), customer_id=0, history=[])))
    intents = {r[1]: list(r[5] or ()) for r in kb.index().rows}
    results = agent.respond_many([r for _, r in pending]) if pending else []
    for (i, _), r in zip(pending, results):
        out[i].update(action=r.action, escalated=r.action == "escalate",
                      reason=r.reason.value if r.reason else None,
                      kb=[{"slug": s, "intents": intents.get(s, [])} for s in r.kb_slugs])
    return out


def fold_routers(examples: list[Example], *, folds: int = 5, **pipeline_args):
    """[(router trained on the other folds, indices of this fold)] with grouped folds."""
    from sklearn.model_selection import GroupKFold

    from flows import routing

    texts = routing._clip([e.text for e in examples])
    labels = np.array([e.label for e in examples])
    weights = routing.sample_weights(examples)
    out = []
    for train_idx, test_idx in GroupKFold(n_splits=folds).split(texts, labels,
                                                                 [e.group for e in examples]):
        pipeline = routing.build_pipeline(**pipeline_args).fit(
            [texts[i] for i in train_idx], labels[train_idx], clf__sample_weight=weights[train_idx])
        out.append((routing.Router(pipeline, {"version": "cv"}), test_idx))
    return out


def cross_validate_decisions(examples: list[Example], routers, *, kb=None, policy=None,
                             thresholds=None, offensive: frozenset[str] = frozenset()) -> list[dict[str, Any]]:
    """Every example decided by the router of the fold that did not train on it."""
    from flows.embeddings import HashingEmbedder
    from flows.policy import load_policy

    kb = kb or MemoryKb(REPO / "flows" / "kb_demo", HashingEmbedder())
    policy = policy or load_policy(REPO / "flows" / "escalation_policy.yaml")
    details: list[dict[str, Any] | None] = [None] * len(examples)
    for router, test_idx in routers:
        for i, d in zip(test_idx, decide_all([examples[i] for i in test_idx], router, kb, policy,
                                             thresholds, offensive)):
            details[i] = d
    return details  # type: ignore[return-value]


def summarize_by_source(details: list[dict[str, Any]]) -> dict[str, Any]:
    from fte.commands.eval import summarize

    out = {}
    for source in sorted({d["source"] for d in details}) + ["all"]:
        part = [{**d, "expect_out_of_scope": d["expect_intent"] is None and not d["expect_escalate"],
                 "violations": []}
                for d in details if source in ("all", d["source"])]
        s = summarize(part)
        person = [d for d in part if d["expect_reason"] == "human_requested"]
        out[source] = {"n": s["n"], "resolution": s["resolution"],
                       "escalation": {k: s["escalation"][k] for k in ("precision", "recall")},
                       "recall_by_reason": s["escalation"]["recall_by_reason"],
                       "person_escalated": round(sum(d["escalated"] for d in person) / len(person), 4)
                       if person else None,
                       "out_of_scope": s["out_of_scope"]}
    return out


def main(argv: list[str] | None = None) -> int:
    import argparse

    from flows.routing_data import load_examples
    from fte.commands.model import WRITTEN_EXAMPLES

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--semantic", type=float, default=None)
    p.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                   help="a resolution threshold (flows/resolution.py Thresholds) or escalate_min")
    p.add_argument("--sweep", default=None, metavar="NAME=V1,V2,...", help="one setting, several values")
    args = p.parse_args(argv)
    from flows.embeddings import HashingEmbedder
    from flows.policy import load_policy
    from flows.resolution import Thresholds

    train = [e for e in load_examples(args.data, WRITTEN_EXAMPLES) if not e.heldout]
    routers = fold_routers(train, folds=args.folds,
                           **({} if args.semantic is None else {"semantic": args.semantic}))
    kb = MemoryKb(REPO / "flows" / "kb_demo", HashingEmbedder())
    offensive = offensive_bitext(args.data)
    fixed = {k: float(v) for k, v in (s.split("=", 1) for s in args.set)}
    name, values = (args.sweep.split("=", 1)[0], args.sweep.split("=", 1)[1].split(",")) \
        if args.sweep else (None, [None])
    for value in values:
        settings = {**fixed, **({name: float(value)} if name else {})}
        policy = load_policy(REPO / "flows" / "escalation_policy.yaml")
        if "escalate_min" in settings:
            policy = replace(policy, route_escalate_min=settings.pop("escalate_min"))
        details = cross_validate_decisions(train, routers, kb=kb, policy=policy,
                                           thresholds=Thresholds(**settings), offensive=offensive)
        for source, figures in summarize_by_source(details).items():
            print(json.dumps({"setting": {name: value} if name else fixed, "source": source, **figures}),
                  flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
