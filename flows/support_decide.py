"""The decide stage: BatchContext -> BatchPlan, no database, no broker.

Per message, in order for each customer: continuity (which conversation, channel switch,
which ticket), then human takeover (attach; one holding acknowledgement), the escalation
policy, the agent, formatting of the reply and the events to publish. Messages are decided
in rounds (round k = each customer's k-th message of the batch) so one round's agent
requests go out together while a customer's messages still see each other's replies.

The agent is the one dependency with a side (an LLM call for the OpenAI agent): it is given
as `ask`, a function from a list of AgentRequests to AgentResults in the same order.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta

from flows.agent import AgentRequest, AgentResult, HistoryItem, PreviousContact
from flows.formatting import format_reply
from flows.policy import decide as policy_decide
from flows.policy import policy_text, prime_routes
from flows.rate_limit import WAIT_TEXT as RATE_LIMIT_TEXT
from flows.support_model import (
    BatchContext,
    BatchPlan,
    Conversation,
    PlannedEscalation,
    PlannedMessage,
    PlannedTicket,
    Ticket,
)
from flows.support_steps import (
    HOLDING_TEXT,
    Outcome,
    Work,
    customer_rounds,
    escalation_ack_text,
    recipient_for,
    support_event,
    trailing_clarifications,
    web_or_new_ticket_id,
)
from schema.events import Escalation, EscalationReason, Reply, ReplyKind, SupportEventKind
from schema.queries.events import OutboxEvent

HISTORY = 20
Ask = Callable[[Sequence[AgentRequest]], list[AgentResult]]


def previous_contact(history: list[dict], channel: str | None = None,
                     conversation_id: int | None = None) -> PreviousContact | None:
    """The earlier contact a reply should acknowledge (formatting does so only when it was on
    another channel): how this conversation started if that was on another channel, else
    the latest earlier message on another channel, else the latest earlier message.
    Once per conversation: None when a reply in this conversation already went out on
    another channel than that contact's since it (that reply carried the acknowledgement)."""
    inbound = [h for h in history if h["direction"] == "inbound"]
    if not inbound:
        return None
    same_conv = [h for h in inbound if conversation_id is not None
                 and h.get("conversation_id") == conversation_id]
    other = [h for h in inbound if h["channel"] != channel]
    if same_conv and same_conv[0]["channel"] != channel:
        h = same_conv[0]
    elif other:
        h = other[-1]
    else:
        h = inbound[-1]
    # (web replies never carry it: the ticket page quotes no other channel, see format_outcome)
    if conversation_id is not None and any(
            o["direction"] == "outbound" and o.get("conversation_id") == conversation_id
            and o["channel"] not in (h["channel"], "web") and o["occurred_at"] >= h["occurred_at"]
            for o in history):
        return None
    about = h.get("subject") or " ".join((h.get("body") or "").split())[:60]
    return PreviousContact(h["channel"], h["occurred_at"], about)


class _Item:
    """One message while its batch is being decided."""

    __slots__ = ("conv", "escalation_id", "hist", "outcome", "ticket", "work")

    def __init__(self, work: Work, conv: Conversation, ticket: Ticket):
        self.work, self.conv, self.ticket = work, conv, ticket
        self.hist: list[dict] = []
        self.outcome: Outcome | None = None
        self.escalation_id: int | None = None


def plan_continuity(ctx: BatchContext, plan: BatchPlan, reopen: timedelta) -> list[_Item]:
    """Conversation and ticket of each message; fills the plan's conversation/ticket rows."""
    convs = dict(ctx.conversations)
    tickets = dict(ctx.tickets)
    new_ids = iter(ctx.conversation_ids)
    touched: dict[int, Conversation] = {}
    new: dict[int, Conversation] = {}
    items = []
    for w in ctx.todo:
        msg = w.inbound.msg
        channel, at = msg.channel.value, msg.received_at
        conv = convs.get(w.customer_id)
        # A conversation idle longer than the reopen window is over (open or not): the message
        # starts a new one (and a new ticket); within it, a closed one reopens.
        if conv is None or at - conv.last_message_at > reopen:
            if conv is not None and conv.status == "open":
                plan.closed_conversations.append(conv.id)
                touched.pop(conv.id, None)
                new.pop(conv.id, None)
            conv = Conversation(next(new_ids), w.customer_id, "open", channel, at)
            new[conv.id] = conv
            plan.first_channel[conv.id] = channel
        else:
            if conv.status != "open":
                plan.reopened_conversations.append(conv.id)
            if conv.last_channel != channel:
                plan.switches.append((conv.id, conv.last_channel, channel, msg.inbound_key, at))
            conv = Conversation(conv.id, conv.customer_id, "open", channel, max(conv.last_message_at, at))
            (new if conv.id in new else touched)[conv.id] = conv
        convs[w.customer_id] = conv
        ticket = _ticket(w, conv, tickets, plan)
        items.append(_Item(w, conv, ticket))
    plan.new_conversations = list(new.values())
    plan.touched_conversations = list(touched.values())
    return items


def _ticket(w: Work, conv: Conversation, tickets: dict[int, Ticket], plan: BatchPlan) -> Ticket:
    msg = w.inbound.msg
    web = msg.channel.value == "web" and bool(msg.ticket_id)
    current = tickets.get(conv.id)
    if current is not None and not web:
        return current
    meta = msg.metadata or {}
    ticket = Ticket(msg.ticket_id if web else web_or_new_ticket_id(msg), conv.id,
                    current.priority if current is not None and current.id == msg.ticket_id else "normal",
                    "open")
    plan.tickets.append(PlannedTicket(
        id=ticket.id, customer_id=w.customer_id, conversation_id=conv.id, channel=msg.channel.value,
        subject=msg.subject if web else (msg.subject or msg.body[:80]),
        category=str(meta.get("category") or "general") if web else "general",
        contact_email=next((i.value for i in w.inbound.identifiers if i.kind.value == "email"), None)
        if web else None,
        contact_name=(meta.get("name") or msg.sender_name) if web else None,
        source_inbound_key=msg.inbound_key, created_at=msg.received_at))
    tickets[conv.id] = ticket
    if meta.get("ticket_reply"):  # a reply on the ticket page opens nothing
        return ticket
    # A web ticket is opened when the flow first takes it (the form created the row).
    plan.events.append(_event(support_event(SupportEventKind.TICKET_OPENED, w, ticket_id=ticket.id,
                                            priority=ticket.priority)))
    return ticket


def _event(e) -> OutboxEvent:
    topic = "support.escalations" if isinstance(e, Escalation) else "support.events"
    return OutboxEvent(topic, str(e.customer_id or ""), e.model_dump_json())


def _history_item(w: Work, conv_id: int) -> dict:
    msg = w.inbound.msg
    return {"customer_id": w.customer_id, "conversation_id": conv_id, "channel": msg.channel.value,
            "channel_message_id": msg.channel_message_id, "direction": "inbound", "author": "customer",
            "subject": msg.subject, "body": msg.body, "occurred_at": msg.received_at, "kind": None}


def escalation_outcome(w: Work, reason: str, detail: str, priority: str, *, now: datetime,
                       sla_config=None) -> Outcome:
    reopens = None
    if sla_config is not None:
        from flows.sla import next_business_opening

        try:
            reopens = next_business_opening(now, sla_config)
        except ValueError:
            reopens = None
    return Outcome(w, "escalated", reply_kind=ReplyKind.ESCALATION_ACK,
                   reply_text=escalation_ack_text(reopens, now), escalation_reason=reason,
                   escalation_detail=detail, priority=priority)


def decide_batch(ctx: BatchContext, *, ask: Ask, policy, reopen: timedelta = timedelta(hours=24),
                 sla_config=None, now: datetime | None = None) -> BatchPlan:
    now = now or datetime.now(UTC)
    plan = BatchPlan(batch=ctx.batch)
    items = plan_continuity(ctx, plan, reopen)
    history = {c: list(h) for c, h in ctx.history.items()}
    active = {c: e.id for c, e in ctx.active.items()}  # customer -> escalation id
    holding_sent = {c: e.holding_ack_sent for c, e in ctx.active.items()}
    new_escalation_ids = iter(ctx.escalation_ids)
    # Learned routing: one model call for the whole batch; `policy_decide` reads its cache.
    prime_routes(policy, [policy_text(i.work.inbound.msg) for i in items])
    for rnd in customer_rounds(items, lambda i: i.work.customer_id):
        ask_items = []
        for item in rnd:
            w = item.work
            msg = w.inbound.msg
            item.hist = history.setdefault(w.customer_id, [])[-HISTORY:]
            history[w.customer_id].append(_history_item(w, item.conv.id))
            if w.customer_id in active:  # human takeover: attach, acknowledge once
                item.outcome = Outcome(w, "attached")
                item.escalation_id = active[w.customer_id]
                if not holding_sent.get(w.customer_id):
                    item.outcome.reply_kind = ReplyKind.HOLDING
                    item.outcome.reply_text, item.outcome.holding = HOLDING_TEXT, True
                    holding_sent[w.customer_id] = True
                continue
            if w.rate != "answer":  # over the per-customer limit (flows/rate_limit.py)
                item.outcome = Outcome(w, "coalesced")
                if w.rate == "wait_notice":
                    item.outcome.reply_kind, item.outcome.reply_text = ReplyKind.HOLDING, RATE_LIMIT_TEXT
                continue
            d = policy_decide(policy_text(msg),
                              sentiment=w.sentiment, trend=w.trend,
                              unresolved_turns=trailing_clarifications(item.hist), policy=policy)
            if d is not None:
                item.outcome = escalation_outcome(w, d.reason.value, d.detail, d.priority, now=now,
                                                  sla_config=sla_config)
                item.escalation_id = active[w.customer_id] = next(new_escalation_ids)
                holding_sent[w.customer_id] = False
                continue
            ask_items.append(item)
        requests = [agent_request(i, ctx) for i in ask_items]
        for item, result in zip(ask_items, ask(requests) if requests else []):
            w = item.work
            if result.action == "escalate":
                o = escalation_outcome(w, (result.reason or EscalationReason.AGENT).value,
                                       result.text[:500], "normal", now=now, sla_config=sla_config)
                item.escalation_id = active[w.customer_id] = next(new_escalation_ids)
                holding_sent[w.customer_id] = False
            else:
                kind = ReplyKind.AGENT if result.action == "answer" else ReplyKind.CLARIFY
                o = Outcome(w, "answered" if result.action == "answer" else "clarified",
                            reply_kind=kind, reply_text=result.text)
            o.kb_slugs, o.kb_top_score, o.kb_hit, o.tokens = (
                result.kb_slugs, result.kb_top_score, result.kb_hit, result.tokens)
            item.outcome = o
        for item in rnd:  # later rounds see this round's replies in their history
            o = item.outcome
            if o.reply_text:
                history[item.work.customer_id].append({
                    "channel": item.work.inbound.msg.channel.value, "direction": "outbound",
                    "author": "agent", "body": o.reply_text, "subject": None, "occurred_at": now,
                    "kind": o.reply_kind.value, "conversation_id": item.conv.id,
                    "channel_message_id": f"reply:{item.work.inbound.msg.inbound_key}"})
    for item in items:
        _plan_writes(item, ctx, plan)
    return plan


def agent_request(item: _Item, ctx: BatchContext) -> AgentRequest:
    w, msg = item.work, item.work.inbound.msg
    return AgentRequest(inbound=msg, customer_id=w.customer_id,
                        customer_name=ctx.names.get(w.customer_id) or msg.sender_name,
                        history=[HistoryItem(h["channel"], h["direction"], h["author"], h["body"],
                                             h["occurred_at"]) for h in item.hist],
                        previous_contact=previous_contact(item.hist, msg.channel.value, item.conv.id))


def _plan_writes(item: _Item, ctx: BatchContext, plan: BatchPlan) -> None:
    o, w, ticket, conv = item.outcome, item.work, item.ticket, item.conv
    msg = w.inbound.msg
    plan.events.append(_event(support_event(SupportEventKind.RECEIVED, w, ticket_id=ticket.id,
                                            priority=ticket.priority, sentiment=w.sentiment)))
    if o.handled_as == "escalated":
        plan.escalations.append(PlannedEscalation(
            id=item.escalation_id, customer_id=w.customer_id, conversation_id=conv.id,
            ticket_id=ticket.id, inbound_key=msg.inbound_key, channel=msg.channel.value,
            reason=o.escalation_reason, detail=o.escalation_detail, priority=o.priority))
        plan.events.append(_event(support_event(SupportEventKind.ESCALATED, w, ticket_id=ticket.id,
                                                priority=o.priority, reason=o.escalation_reason)))
        plan.events.append(_event(Escalation(
            escalation_id=item.escalation_id, customer_id=w.customer_id, conversation_id=conv.id,
            ticket_id=ticket.id, channel=msg.channel, reason=EscalationReason(o.escalation_reason),
            detail=o.escalation_detail[:500], inbound_key=msg.inbound_key, priority=o.priority)))
    elif o.handled_as == "attached" and o.holding and item.escalation_id is not None:
        plan.holding_sent.append(item.escalation_id)
    plan.messages.append(PlannedMessage(
        channel=msg.channel.value, channel_message_id=msg.channel_message_id,
        customer_id=w.customer_id, conversation_id=conv.id, ticket_id=ticket.id,
        subject=msg.subject, body=msg.body, sentiment=w.sentiment,
        metadata={**msg.metadata, "sender": [x.value for x in w.inbound.identifiers]},
        occurred_at=msg.received_at, handled_as=o.handled_as,
        escalation_id=item.escalation_id if o.handled_as in ("escalated", "attached") else None))
    if o.kb_top_score is not None or o.kb_slugs:
        plan.kb_lookups.append((msg.inbound_key, msg.channel.value, msg.body[:2000],
                                o.kb_slugs[0] if o.kb_slugs else None, o.kb_top_score,
                                o.handled_as == "answered"))
    if o.handled_as == "answered":
        plan.answered_tickets.append(ticket.id)
    if o.reply_text:
        plan.replies.append(format_outcome(o, item, ctx))
        plan.reply_escalations.append(item.escalation_id if o.handled_as in ("escalated", "attached")
                                      else None)
        plan.events.append(_event(support_event(SupportEventKind.REPLIED, w, ticket_id=ticket.id,
                                                priority=ticket.priority, reply_kind=o.reply_kind.value,
                                                kb_hit=o.kb_hit, agent_tokens=o.tokens)))


def format_outcome(o: Outcome, item: _Item, ctx: BatchContext) -> Reply:
    msg, w = o.work.inbound.msg, o.work
    prev = previous_contact(item.hist, msg.channel.value, item.conv.id)
    name = ctx.names.get(w.customer_id) or msg.sender_name
    if msg.channel.value == "web":
        # The ticket page is public to whoever holds the ticket id: greet with the name
        # typed on this ticket and quote no contact from another channel.
        prev, name = None, msg.sender_name
    f = format_reply(msg.channel, o.reply_text,
                     customer_name=name,
                     inbound_subject=msg.subject, inbound_metadata=msg.metadata,
                     previous_contact=prev, kind=o.reply_kind)
    return Reply(inbound_key=msg.inbound_key, kind=o.reply_kind, channel=msg.channel,
                 customer_id=w.customer_id, conversation_id=item.conv.id, ticket_id=item.ticket.id,
                 recipient=recipient_for(msg, w.inbound.identifiers), subject=f.subject,
                 body=f.body, parts=f.parts, html=f.html, headers=dict(f.headers),
                 thread_id=msg.thread_id)
