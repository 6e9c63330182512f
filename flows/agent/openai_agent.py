"""OpenAI (or any compatible server) agent with tool calling.

Bounded tool loop (`max_steps` model calls), per-call timeout, retries with exponential
backoff on transient errors (tenacity), and on failure a fallback to the local agent (or an
escalation when there is none). Results are cached in `agent_results` by inbound_key, so a
replay after recovery returns the stored result without calling the model again.

The learned routing sits in front (as for the local agent): multi-turn signals escalate
with their reason, confident out-of-scope messages get the scope question without a model
call, and the route's intent is given to the model as a hint. `escalate_to_human` keeps the
model's reason when it names one of ours; `create_ticket` records a follow-up ticket row.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import openai
from psycopg.types.json import Jsonb
from tenacity import (
    retry,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
)

import uuid

from flows.agent.base import AgentRequest, AgentResult, question_text
from flows.formatting import EMAIL_MAX_WORDS, WEB_MAX_WORDS, WHATSAPP_MAX_CHARS
from flows.knowledge import KnowledgeBase
from flows.resolution import SCOPE_TEXT, CLARIFY_OPENING, Thresholds, Turn, multi_turn_signal
from fte.logs import get_logger
from schema.events import EscalationReason

log = get_logger(__name__)

SYSTEM_PROMPT = """You are the customer support agent of Northwind Goods, an online shop.
Answer ONLY from knowledge base articles returned by search_knowledge_base; never invent
policies, prices or dates. Search before answering. If the articles do not answer the
question, ask one short clarifying question. Call escalate_to_human when the customer needs
a person (refunds, legal matters, pricing negotiation, anger, or anything you cannot solve).
Be concise and friendly; no greeting or sign-off (they are added for the channel).
Length rules per channel (replies over them are cut): email at most {email} words; web form
at most {web} words; WhatsApp short and plain, ideally one message of at most {whatsapp}
characters, never markdown.""".format(email=EMAIL_MAX_WORDS - 40, web=WEB_MAX_WORDS - 20,
                                       whatsapp=WHATSAPP_MAX_CHARS)

TOOLS: list[dict[str, Any]] = [
    {"type": "function", "function": {
        "name": "search_knowledge_base",
        "description": "Search the help-centre articles. Returns the best matching articles.",
        "parameters": {"type": "object", "properties": {
            "query": {"type": "string", "description": "what to look for"}},
            "required": ["query"]}}},
    {"type": "function", "function": {
        "name": "get_customer_history",
        "description": "The customer's recent messages on all channels, oldest first.",
        "parameters": {"type": "object", "properties": {
            "limit": {"type": "integer", "minimum": 1, "maximum": 20}}}}},
    {"type": "function", "function": {
        "name": "create_ticket",
        "description": "Record a follow-up ticket for this conversation.",
        "parameters": {"type": "object", "properties": {
            "summary": {"type": "string"},
            "priority": {"type": "string", "enum": ["low", "normal", "high", "urgent"]}},
            "required": ["summary"]}}},
    {"type": "function", "function": {
        "name": "escalate_to_human",
        "description": "Hand the conversation to a human colleague.",
        "parameters": {"type": "object", "properties": {
            "reason": {"type": "string", "enum": [r.value for r in EscalationReason]},
            "summary": {"type": "string"}},
            "required": ["reason"]}}},
]

TRANSIENT = (openai.APITimeoutError, openai.APIConnectionError, openai.RateLimitError,
             openai.InternalServerError)
KB_HIT_MIN = 0.60  # same bar as the local agent's confident answer
OUT_OF_SCOPE_MIN = 0.60  # route confidence to answer with the scope question, no model call
TICKET_NAMESPACE = uuid.UUID("0d9a4f0e-6a43-4d8e-8f0b-3a1c1d9e7f21")


class AgentFailed(Exception):
    pass


class OpenAIAgent:
    def __init__(self, client: openai.OpenAI, model: str, kb: KnowledgeBase, *,
                 fallback=None, database_url: str | None = None, max_steps: int = 4,
                 attempts: int = 3, backoff_s: float = 0.5, router=None):
        self.client, self.model, self.kb, self.router = client, model, kb, router
        self.fallback, self.database_url = fallback, database_url
        self.max_steps, self.attempts, self.backoff_s = max_steps, attempts, backoff_s
        self.provider = f"openai:{model}"

    # --- public -------------------------------------------------------------------------
    def respond(self, req: AgentRequest) -> AgentResult:
        return self.respond_many([req])[0]

    def respond_many(self, reqs: Sequence[AgentRequest]) -> list[AgentResult]:
        cached = self._cached([r.inbound.inbound_key for r in reqs])
        results = []
        for req in reqs:
            key = req.inbound.inbound_key
            if key in cached:
                results.append(cached[key])
                continue
            result = self._respond_uncached(req)
            self._store(key, result)
            results.append(result)
        return results

    # --- model loop ---------------------------------------------------------------------
    def _in_front(self, req: AgentRequest, question: str):
        """The routing in front of the model: (result without a model call | None, route)."""
        signal = multi_turn_signal(question, [Turn(h.direction, h.body) for h in req.history],
                                   Thresholds())
        if signal:
            return AgentResult("escalate", signal[1], EscalationReason(signal[0]),
                               provider=self.provider), None
        route = self.router.route(question) if self.router else None
        if route is not None and route.out_of_scope and route.confidence >= OUT_OF_SCOPE_MIN:
            already = any(CLARIFY_OPENING in h.body for h in req.history[-1:] if h.direction == "outbound")
            if already:
                return AgentResult("escalate", "out of scope after a clarifying question",
                                   EscalationReason.LOW_CONFIDENCE, provider=self.provider), route
            return AgentResult("clarify", f"{CLARIFY_OPENING}, could you tell me what you need? "
                               f"{SCOPE_TEXT}.", provider=self.provider), route
        return None, route

    def _respond_uncached(self, req: AgentRequest) -> AgentResult:
        try:
            early, route = self._in_front(req, question_text(req.inbound))
            if early is not None:
                return early
            return self._run(req, route)
        except (openai.OpenAIError, AgentFailed, ValueError) as exc:
            log.warning("agent.openai.failed", inbound_key=req.inbound.inbound_key,
                        error=f"{type(exc).__name__}: {exc}"[:300])
            if self.fallback is not None:
                r = self.fallback.respond(req)
                return AgentResult(r.action, r.text, r.reason, r.kb_slugs, r.kb_top_score, r.kb_hit,
                                   r.tokens, f"{r.provider} (fallback)")
            return AgentResult("escalate", f"The answering service failed ({type(exc).__name__}).",
                               EscalationReason.AGENT, provider=self.provider)

    def _create(self, messages: list[dict]):
        @retry(retry=retry_if_exception_type(TRANSIENT), stop=stop_after_attempt(self.attempts),
               wait=wait_exponential(multiplier=self.backoff_s, max=8), reraise=True)
        def call():
            return self.client.chat.completions.create(
                model=self.model, messages=messages, tools=TOOLS, tool_choice="auto",
                temperature=0.2)
        return call()

    def _run(self, req: AgentRequest, route=None) -> AgentResult:
        question = question_text(req.inbound)
        messages: list[dict] = [
            {"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": _user_prompt(req, question, route)},
        ]
        tokens = 0
        slugs: list[str] = []
        top_score: float | None = None
        for _ in range(self.max_steps):
            completion = self._create(messages)
            tokens += completion.usage.total_tokens if completion.usage else 0
            msg = completion.choices[0].message
            calls = msg.tool_calls or []
            if not calls:
                text = (msg.content or "").strip()
                if not text:
                    raise AgentFailed("empty answer")
                kb_hit = top_score is not None and top_score >= KB_HIT_MIN
                return AgentResult("answer" if kb_hit else "clarify", text, None, slugs, top_score,
                                   kb_hit, tokens, self.provider)
            messages.append({"role": "assistant", "content": msg.content, "tool_calls": [
                {"id": c.id, "type": "function",
                 "function": {"name": c.function.name, "arguments": c.function.arguments}}
                for c in calls]})
            for call in calls:
                name = call.function.name
                try:
                    args = json.loads(call.function.arguments or "{}")
                except json.JSONDecodeError:
                    args = {}
                if name == "escalate_to_human":
                    said = str(args.get("reason") or "agent")[:200]
                    try:
                        reason = EscalationReason(said.strip().lower())
                    except ValueError:  # free text: keep it in the note, file it as the agent's
                        reason = EscalationReason.AGENT
                    summary = str(args.get("summary") or "")
                    note = f"{said}: {summary}" if summary and reason is EscalationReason.AGENT \
                        else (summary or said)
                    return AgentResult("escalate", note[:1000], reason, slugs, top_score, False,
                                       tokens, self.provider)
                output = self._tool(name, args, req, question)
                if name == "search_knowledge_base":
                    for hit in output.get("articles", []):
                        if hit["slug"] not in slugs:
                            slugs.append(hit["slug"])
                        top_score = max(top_score or 0.0, hit["score"])
                messages.append({"role": "tool", "tool_call_id": call.id,
                                 "content": json.dumps(output)[:8000]})
        raise AgentFailed(f"no answer within {self.max_steps} model calls")

    def _tool(self, name: str, args: dict, req: AgentRequest, question: str) -> dict:
        if name == "search_knowledge_base":
            hits = self.kb.search(str(args.get("query") or question)[:500], k=3)
            return {"articles": [{"slug": h.slug, "title": h.title, "body": h.body,
                                  "score": h.score} for h in hits]}
        if name == "get_customer_history":
            limit = max(1, min(20, int(args.get("limit") or 20)))
            return {"messages": [{"channel": h.channel, "direction": h.direction,
                                  "body": h.body[:1000], "at": h.occurred_at.isoformat()}
                                 for h in req.history[-limit:]]}
        if name == "create_ticket":
            return self._create_ticket(req, str(args.get("summary") or question)[:200],
                                       str(args.get("priority") or "normal"))
        return {"error": f"unknown tool {name}"}

    def _create_ticket(self, req: AgentRequest, summary: str, priority: str) -> dict:
        """A follow-up ticket on the customer's latest conversation; one per inbound message
        (the id derives from it), so a retried tool call records nothing twice."""
        if priority not in ("low", "normal", "high", "urgent"):
            priority = "normal"
        ticket_id = f"T-{uuid.uuid5(TICKET_NAMESPACE, req.inbound.inbound_key)}"
        if not self.database_url:
            return {"error": "no database: ticket not recorded"}
        from schema.db import pool

        with pool(self.database_url).connection() as conn:
            conn.execute(
                """INSERT INTO tickets (id, customer_id, conversation_id, channel, subject, category,
                                        priority, source_inbound_key)
                   SELECT %(id)s, c.id, (SELECT id FROM conversations WHERE customer_id = c.id
                                          ORDER BY last_message_at DESC LIMIT 1),
                          %(channel)s, %(summary)s, 'follow-up', %(priority)s, %(source)s
                     FROM (SELECT %(customer)s::bigint AS want) w
                     LEFT JOIN customers c ON c.id = w.want
                   ON CONFLICT (id) DO NOTHING""",
                {"id": ticket_id, "channel": req.inbound.channel.value, "summary": summary,
                 "priority": priority, "source": f"{req.inbound.inbound_key}:agent-ticket",
                 "customer": req.customer_id})
        return {"ticket_id": ticket_id, "status": "recorded", "priority": priority}

    # --- cache --------------------------------------------------------------------------
    def _cached(self, keys: list[str]) -> dict[str, AgentResult]:
        if not self.database_url or not keys:
            return {}
        from psycopg.rows import tuple_row

        from schema.db import pool

        with pool(self.database_url).connection() as conn, conn.cursor(row_factory=tuple_row) as cur:
            cur.execute("SELECT inbound_key, result FROM agent_results WHERE inbound_key = ANY(%s)",
                        (keys,))
            return {k: AgentResult.from_json(v) for k, v in cur.fetchall()}

    def _store(self, key: str, result: AgentResult) -> None:
        if not self.database_url:
            return
        from schema.db import pool

        with pool(self.database_url).connection() as conn:
            conn.execute(
                """INSERT INTO agent_results (inbound_key, provider, result, tokens)
                   VALUES (%s, %s, %s, %s) ON CONFLICT (inbound_key) DO NOTHING""",
                (key, result.provider, Jsonb(result.to_json()), result.tokens))


def _user_prompt(req: AgentRequest, question: str, route=None) -> str:
    parts = [f"Channel: {req.inbound.channel.value}"]
    if route is not None and route.intent:
        parts.append(f"Likely topic (routing model, {route.confidence:.0%} sure): {route.intent}")
    if req.customer_name:
        parts.append(f"Customer name: {req.customer_name}")
    if req.previous_contact:
        pc = req.previous_contact
        parts.append(f"Previous contact: {pc.channel} on {pc.occurred_at:%Y-%m-%d} about "
                     f"{pc.subject_or_summary}")
    parts.append(f"Message: {question}")
    return "\n".join(parts)
