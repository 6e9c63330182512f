"""The decide stage's agent caller: requests in flight together, a late answer escalates
alone, a failing agent escalates instead of losing the messages."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

from flows.agent import AgentRequest, AgentResult
from schema.events import Channel, Identifier, IdentifierKind, InboundMessage
from sinks.support_store import AgentCaller


def request(i: int) -> AgentRequest:
    msg = InboundMessage(channel=Channel.EMAIL, channel_message_id=f"a{i}",
                         sender=[Identifier(kind=IdentifierKind.EMAIL, value=f"a{i}@x.com")],
                         body=f"question {i}", received_at=datetime.now(UTC))
    return AgentRequest(inbound=msg, customer_id=i)


class MeetingAgent:
    """Answers only once `n` requests are being answered at the same time (a barrier): a
    caller that asks one after another never gets an answer."""

    provider = "openai:test"

    def __init__(self, n: int):
        self.barrier = threading.Barrier(n, timeout=30)

    def respond(self, req):
        self.barrier.wait()
        return AgentResult("answer", f"answer to {req.inbound.body}")


def test_requests_of_a_round_are_in_flight_together():
    caller = AgentCaller(MeetingAgent(6), concurrency=6, chunk=1)
    results = caller([request(i) for i in range(6)])
    assert [r.text for r in results] == [f"answer to question {i}" for i in range(6)]


class OneStuck:
    def __init__(self):
        self.release = threading.Event()

    def respond(self, req):
        if req.customer_id == 2:
            self.release.wait(60)  # a provider that never answers this one
        return AgentResult("answer", "ok")


def test_a_late_answer_escalates_alone():
    agent = OneStuck()
    caller = AgentCaller(agent, concurrency=4, chunk=1, timeout_s=5)
    try:
        results = caller([request(i) for i in range(4)])
    finally:
        agent.release.set()
    assert [r.action for r in results] == ["answer", "answer", "escalate", "answer"]
    assert results[2].reason.value == "agent"


class Broken:
    def respond_many(self, reqs):
        raise ConnectionError("provider down")


def test_agent_failure_escalates_every_message_of_the_chunk():
    results = AgentCaller(Broken(), chunk=16)([request(i) for i in range(3)])
    assert [(r.action, r.reason.value) for r in results] == [("escalate", "agent")] * 3


def test_rate_limit_lets_every_request_through_in_the_end():
    caller = AgentCaller(MeetingAgent(1), concurrency=2, chunk=1, rate_per_s=50)
    assert len(caller([request(i) for i in range(10)])) == 10
