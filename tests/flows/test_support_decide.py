"""The decide stage on its own (no database, no broker): BatchContext in, BatchPlan out."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from flows.agent import AgentResult
from flows.policy import load_policy, with_router
from flows.sentiment import Trend
from flows.support_decide import decide_batch
from flows.support_model import ActiveEscalation, BatchContext, Conversation, Ticket
from flows.support_steps import Inbound, Work
from fte.settings import Settings
from schema.events import Channel, Identifier, IdentifierKind, InboundMessage

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def policy(routing_model):
    """The production policy: the rule list, anger, then the learned route."""
    return with_router(load_policy(Settings().ESCALATION_POLICY_FILE), routing_model[0])


def work(customer: int, body: str, *, channel="email", n=0, at=NOW, subject=None, **kw) -> Work:
    ident = Identifier(kind=IdentifierKind.PHONE, value=f"+1555000{customer:04d}") \
        if channel == "whatsapp" else Identifier(kind=IdentifierKind.EMAIL, value=f"c{customer}@x.com")
    msg = InboundMessage(channel=Channel(channel), channel_message_id=f"m{customer}-{n}", sender=[ident],
                         body=body, subject=subject, received_at=at, **kw)
    return Work(Inbound(msg, (ident,), f"t.channel.{channel}.inbound", 0, n), customer, 0.1, Trend())


def context(todo, *, conversations=None, tickets=None, active=None, history=None) -> BatchContext:
    return BatchContext(batch=list(todo), todo=list(todo), names={}, conversations=conversations or {},
                        tickets=tickets or {}, active=active or {}, history=history or {},
                        conversation_ids=list(range(100, 100 + len(todo))),
                        escalation_ids=list(range(500, 500 + len(todo))))


class Answers:
    """The agent dependency: answers every request, remembering what it was asked."""

    def __init__(self):
        self.rounds = []

    def __call__(self, reqs):
        self.rounds.append(list(reqs))
        return [AgentResult("answer", f"Here is how: {r.inbound.body}", kb_slugs=["track-order"],
                            kb_top_score=0.9, kb_hit=True) for r in reqs]


def kinds(plan) -> list[tuple[str, str]]:
    return [(e.topic, json.loads(e.value).get("kind", "escalation")) for e in plan.events]


def test_new_customer_gets_conversation_ticket_answer_and_events(policy):
    ask = Answers()
    w = work(1, "How can I track my order?", subject="Tracking")
    plan = decide_batch(context([w]), ask=ask, policy=policy, now=NOW)
    assert [c.id for c in plan.new_conversations] == [100] and plan.first_channel == {100: "email"}
    assert len(plan.tickets) == 1 and plan.tickets[0].conversation_id == 100
    (m,) = plan.messages
    assert (m.handled_as, m.conversation_id, m.ticket_id) == ("answered", 100, plan.tickets[0].id)
    (reply,) = plan.replies
    assert reply.kind.value == "agent" and reply.subject == "Re: Tracking" and reply.recipient == "c1@x.com"
    assert plan.answered_tickets == [plan.tickets[0].id]
    assert plan.kb_lookups[0][3] == "track-order"
    assert kinds(plan) == [("support.events", "ticket_opened"), ("support.events", "received"),
                           ("support.events", "replied")]
    assert plan.escalations == [] and len(ask.rounds) == 1


def test_policy_escalates_and_a_follow_up_in_the_same_batch_gets_one_holding_ack(policy):
    ask = Answers()
    batch = [work(2, "I want a refund for my broken blender", n=0, subject="Refund"),
             work(2, "hello?", n=1), work(2, "anyone there?", n=2)]
    plan = decide_batch(context(batch), ask=ask, policy=policy, now=NOW)
    assert [m.handled_as for m in plan.messages] == ["escalated", "attached", "attached"]
    (esc,) = plan.escalations
    assert esc.id == 500 and esc.reason == "refund"
    assert [m.escalation_id for m in plan.messages] == [500, 500, 500]
    assert [r.kind.value for r in plan.replies] == ["escalation_ack", "holding"]
    assert plan.reply_escalations == [500, 500]
    assert plan.holding_sent == [500]
    assert ("support.escalations", "escalation") in kinds(plan)
    assert ask.rounds == []  # no agent call for any of them


def test_takeover_in_progress_attaches_without_a_second_holding_ack(policy):
    conv = Conversation(7, 3, "open", "email", NOW - timedelta(hours=1))
    batch = [work(3, "how do I change my address", channel="whatsapp")]
    plan = decide_batch(context(batch, conversations={3: conv}, tickets={7: Ticket("T-7", 7, "high", "escalated")},
                                active={3: ActiveEscalation(40, 3, True)}),
                        ask=Answers(), policy=policy, now=NOW)
    assert [(m.handled_as, m.escalation_id, m.conversation_id, m.ticket_id) for m in plan.messages] == \
        [("attached", 40, 7, "T-7")]
    assert plan.replies == [] and plan.tickets == [] and plan.new_conversations == []
    assert plan.switches == [(7, "email", "whatsapp", batch[0].inbound.msg.inbound_key, NOW)]
    assert [c.last_channel for c in plan.touched_conversations] == ["whatsapp"]


def test_idle_conversation_closes_and_a_new_one_opens(policy):
    old = Conversation(8, 4, "open", "email", NOW - timedelta(hours=30))
    plan = decide_batch(context([work(4, "How do I create an account?")], conversations={4: old},
                                tickets={8: Ticket("T-8", 8, "normal", "answered")}),
                        ask=Answers(), policy=policy, reopen=timedelta(hours=24), now=NOW)
    assert plan.closed_conversations == [8]
    assert [c.id for c in plan.new_conversations] == [100]
    assert plan.tickets[0].id != "T-8" and plan.messages[0].conversation_id == 100


def test_a_customers_second_message_sees_the_first_and_its_reply(policy):
    ask = Answers()
    batch = [work(5, "How can I track my order?", n=0), work(6, "What payment methods?", n=0),
             work(5, "And how long does delivery take?", n=1)]
    plan = decide_batch(context(batch), ask=ask, policy=policy, now=NOW)
    assert [len(r) for r in ask.rounds] == [2, 1]  # round 1: both customers; round 2: the follow-up
    history = ask.rounds[1][0].history
    assert [(h.direction, h.body.split(":")[0]) for h in history] == \
        [("inbound", "How can I track my order?"), ("outbound", "Here is how")]
    assert len({m.conversation_id for m in plan.messages if m.customer_id == 5}) == 1
    assert len(plan.tickets) == 2  # one per conversation, not per message


def test_web_form_ticket_keeps_its_id(policy):
    w = work(9, "What payment methods do you accept?", channel="web", subject="Payment",
             ticket_id="T-web-1", metadata={"category": "billing", "name": "Web User"})
    plan = decide_batch(context([w]), ask=Answers(), policy=policy, now=NOW)
    (t,) = plan.tickets
    assert (t.id, t.category, t.contact_name, t.contact_email) == ("T-web-1", "billing", "Web User", "c9@x.com")
    assert plan.messages[0].ticket_id == "T-web-1"


def test_agent_escalation_is_an_escalation_with_the_agents_note(policy):
    def escalate(reqs):
        return [AgentResult("escalate", "customer threatens legal action", None) for _ in reqs]
    plan = decide_batch(context([work(10, "a question about my order")]), ask=escalate,
                        policy=policy, now=NOW)
    (esc,) = plan.escalations
    assert esc.reason == "agent" and esc.detail == "customer threatens legal action"
    assert plan.replies[0].kind.value == "escalation_ack"
