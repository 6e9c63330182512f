"""Benchmark of the answer path's stage logic: policy + local agent (hybrid retrieval) +
formatting on Bitext questions, batched (one retrieval round trip per batch, as the flow
does) versus one message at a time. Prints messages per second and p95 latency.

    FTE_PG_PORT=... python -m loadtests.agent_bench [--n 1000] [--batch 64]

Needs a migrated database with the knowledge base loaded (`fte up`, or `fte migrate` and
`fte kb load flows/kb_demo`).
"""

from __future__ import annotations

import argparse
import csv
import time
import uuid
from datetime import UTC, datetime

from flows.agent import AgentRequest, build_agent
from flows.formatting import format_reply
from flows.policy import decide, load_policy
from loadtests.stats import percentile
from flows.sentiment import score
from fte.settings import get_settings
from schema.events import InboundMessage

BITEXT = get_settings().SHARED_DATA_DIR / "bitext" / "bitext_dev.csv"
FALLBACK = ["how long does delivery take?", "I forgot my password", "which payment methods do you accept?",
            "how do I change my shipping address", "where is my invoice"]


def questions(n: int) -> list[str]:
    if BITEXT.exists():
        with open(BITEXT, newline="", encoding="utf-8") as fh:
            texts = [r["instruction"] for r in csv.DictReader(fh)]
    else:
        texts = FALLBACK
    return [texts[i % len(texts)] for i in range(n)]


def request(text: str) -> AgentRequest:
    inbound = InboundMessage(channel="web", channel_message_id=uuid.uuid4().hex,
                             sender=[{"kind": "email", "value": "bench@example.com"}], body=text,
                             received_at=datetime.now(UTC))
    return AgentRequest(inbound=inbound, customer_id=0)


def handle(agent, policy, texts: list[str]) -> None:
    pending = [t for t in texts if decide(t, sentiment=score(t), trend=None, unresolved_turns=0,
                                          policy=policy) is None]
    for result in agent.respond_many([request(t) for t in pending]):
        format_reply("web", result.text, customer_name=None, inbound_subject=None,
                     inbound_metadata={}, previous_contact=None, kind="agent")


def run(label: str, agent, policy, texts: list[str], batch: int) -> None:
    agent.kb.invalidate()  # no help from the result cache: every question is searched
    agent.kb.cache_size = 0
    latencies = []
    started = time.perf_counter()
    for i in range(0, len(texts), batch):
        t0 = time.perf_counter()
        handle(agent, policy, texts[i:i + batch])
        latencies.extend([time.perf_counter() - t0] * len(texts[i:i + batch]))
    elapsed = time.perf_counter() - started
    p95 = percentile(latencies, 0.95) * 1000
    print(f"{label:<22} {len(texts) / elapsed:8.1f} msg/s   p95 {p95:7.1f} ms per message "
          f"(batch {batch})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=64)
    args = parser.parse_args()
    settings = get_settings()
    from flows.policy import with_router
    from flows.routing import load_router

    router = load_router(settings)
    agent = build_agent(settings, router)
    policy = with_router(load_policy(settings.ESCALATION_POLICY_FILE), router)
    texts = questions(args.n)
    handle(agent, policy, texts[:10])  # warm up connections
    run("batched", agent, policy, texts, args.batch)
    run("one at a time", agent, policy, texts, 1)


if __name__ == "__main__":
    main()
