"""The support dataflow's wiring, run in-process with Bytewax's TestingSource/TestingSink:
parse -> identity (cached, expiring) -> sentiment -> batches -> load -> decide (the real,
pure stage) -> persist. The database edges are replaced by in-memory ones so the test runs
in well under a second; the Postgres side is covered by test_support_flow / test_event_outbox."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from bytewax.connectors.kafka import KafkaSourceMessage
from bytewax.testing import TestingSink, TestingSource, run_main

from flows.agent import AgentResult
from flows.policy import load_policy
from flows.support import ExpiringState, build_flow
from flows.support_decide import decide_batch
from flows.support_model import BatchContext
from fte.settings import Settings
from schema.events import Channel, DeadLetter, Identifier, IdentifierKind, InboundMessage


class LostConnection(Exception):
    pass


class MemoryEdges:
    """load/persist against dicts; decide is the production function."""

    def __init__(self):
        self.policy = load_policy(Settings().ESCALATION_POLICY_FILE)
        self.plans = []
        self.ids = iter(range(1, 10_000))

    def load_step(self, batch):
        return BatchContext(batch, list(batch), {}, {}, {}, {}, {}, [next(self.ids) for _ in batch],
                            [next(self.ids) for _ in batch])

    def decide_step(self, ctx):
        return decide_batch(ctx, ask=lambda reqs: [AgentResult("answer", "ok") for _ in reqs],
                            policy=self.policy)

    def persist_step(self, plan):
        self.plans.append(plan)
        return []


class Directory:
    """Identity resolution against a dict; some identifiers fail."""

    def __init__(self, broken=(), lost=()):
        self.customers: dict[str, int] = {}
        self.calls = 0
        self.broken, self.lost = set(broken), set(lost)

    def __call__(self, item) -> int:
        self.calls += 1
        value = item.identifiers[0].value
        if value in self.lost:
            raise LostConnection("server closed the connection")
        if value in self.broken:
            raise ValueError("invalid byte sequence for encoding UTF8")
        return self.customers.setdefault(value, len(self.customers) + 1)


def kafka(i: int, email: str, body: str = "How can I track my order?") -> KafkaSourceMessage:
    msg = InboundMessage(channel=Channel.EMAIL, channel_message_id=f"m{i}",
                         sender=[Identifier(kind=IdentifierKind.EMAIL, value=email, verified=True)], body=body,
                         received_at=datetime.now(UTC))
    return KafkaSourceMessage(key=email.encode(), value=msg.to_bytes(), topic="t.channel.email.inbound",
                              partition=0, offset=i)


def run(messages, resolve, *, ttl=timedelta(days=1)):
    edges, dead = MemoryEdges(), []
    flow = build_flow(TestingSource(messages), resolve=resolve, stages=edges,
                      dead_letters_db=TestingSink(dead), batch_wait=timedelta(milliseconds=1),
                      state_ttl=ttl, fatal=(LostConnection,))
    run_main(flow)
    return edges, dead


def test_every_message_is_persisted_once_in_customer_order_and_bad_ones_dead_lettered():
    messages = [kafka(i, f"c{i % 3}@x.com") for i in range(9)]
    messages.insert(4, KafkaSourceMessage(key=b"x", value=b"{not json", topic="t.channel.email.inbound",
                                          partition=0, offset=99))
    directory = Directory()
    edges, dead = run(messages, directory)
    persisted = [m for p in edges.plans for m in p.messages]
    assert sorted(m.channel_message_id for m in persisted) == sorted(f"m{i}" for i in range(9))
    for customer in {m.customer_id for m in persisted}:
        mine = [int(m.channel_message_id[1:]) for m in persisted if m.customer_id == customer]
        assert mine == sorted(mine)
    assert all(m.handled_as == "answered" for m in persisted)
    assert [d.offset for d in dead] == [99] and "json" in dead[0].reason.lower()
    assert directory.calls == 3  # one lookup per identifier, the rest from the flow's cache
    events = [e for p in edges.plans for e in p.events]
    assert sum('"kind":"received"' in e.value for e in events) == 9


def test_identity_database_error_dead_letters_that_message_only():
    messages = [kafka(0, "ok@x.com"), kafka(1, "bad@x.com"), kafka(2, "ok@x.com")]
    edges, dead = run(messages, Directory(broken={"bad@x.com"}))
    assert [m.channel_message_id for p in edges.plans for m in p.messages] == ["m0", "m2"]
    assert len(dead) == 1 and dead[0].offset == 1 and dead[0].reason.startswith("identity:")
    assert isinstance(dead[0], DeadLetter) and b"bad@x.com" in dead[0].raw


def test_lost_connection_in_identity_stops_the_flow():
    with pytest.raises(Exception) as info:
        run([kafka(0, "gone@x.com")], Directory(lost={"gone@x.com"}))
    causes, exc = [], info.value
    while exc is not None:
        causes.append(exc)
        exc = exc.__cause__ or exc.__context__
    assert any(isinstance(c, LostConnection) for c in causes)


def test_identity_cache_expires_after_the_ttl():
    messages = [kafka(i, "same@x.com") for i in range(4)]
    kept = Directory()
    run(messages, kept, ttl=timedelta(days=1))
    expired = Directory()
    run(messages, expired, ttl=timedelta(0))
    assert kept.calls == 1
    assert expired.calls > 1  # state dropped: looked up again (memory stays bounded)


def test_expiring_state_snapshot_resumes_with_its_deadline():
    logic = ExpiringState(lambda s, v: ((s or 0) + v, [v]), timedelta(minutes=5))
    out, discard = logic.on_item(2)
    assert out == [2] and discard is False
    state, seen = logic.snapshot()
    resumed = ExpiringState(logic.step, timedelta(minutes=5), (state, seen))
    assert resumed.state == 2 and resumed.notify_at() == seen + timedelta(minutes=5)
    assert resumed.on_notify() == ([], True)
