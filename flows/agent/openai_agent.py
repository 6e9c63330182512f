"""OpenAI (or any compatible server) agent with tool calling.

Bounded tool loop (`max_steps` model calls), per-call timeout, retries with exponential
backoff on transient errors (tenacity), and on failure a fallback to the local agent (or an
escalation when there is none). Results are cached in `agent_results` by inbound_key, so a
replay after recovery returns the stored result without calling the model again.
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

from flows.agent.base import AgentRequest, AgentResult, question_text
from flows.knowledge import KnowledgeBase
from fte.logs import get_logger
from schema.events import EscalationReason

log = get_logger(__name__)

SYSTEM_PROMPT = """You are the customer support agent of Northwind Goods, an online shop.
Answer ONLY from knowledge base articles returned by search_knowledge_base; never invent
policies, prices or dates. Search before answering. If the articles do not answer the
question, ask one short clarifying question. Call escalate_to_human when the customer needs
a person (refunds, legal matters, pricing negotiation, anger, or anything you cannot solve).
Be concise and friendly; no greeting or sign-off (they are added for the channel)."""

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
            "reason": {"type": "string"}, "summary": {"type": "string"}},
            "required": ["reason"]}}},
]

TRANSIENT = (openai.APITimeoutError, openai.APIConnectionError, openai.RateLimitError,
             openai.InternalServerError)
KB_HIT_MIN = 0.60  # same bar as the local agent's confident answer


class AgentFailed(Exception):
    pass


class OpenAIAgent:
    def __init__(self, client: openai.OpenAI, model: str, kb: KnowledgeBase, *,
                 fallback=None, database_url: str | None = None, max_steps: int = 4,
                 attempts: int = 3, backoff_s: float = 0.5):
        self.client, self.model, self.kb = client, model, kb
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
    def _respond_uncached(self, req: AgentRequest) -> AgentResult:
        try:
            return self._run(req)
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

    def _run(self, req: AgentRequest) -> AgentResult:
        question = question_text(req.inbound)
        messages: list[dict] = [
            {"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": _user_prompt(req, question)},
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
                    reason = str(args.get("reason") or "agent")[:200]
                    return AgentResult("escalate", str(args.get("summary") or reason)[:1000],
                                       EscalationReason.AGENT, slugs, top_score, False, tokens,
                                       self.provider)
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
            # The support flow owns ticket rows; every conversation already has one.
            return {"ticket_id": req.inbound.ticket_id or f"conversation of customer {req.customer_id}",
                    "status": "recorded"}
        return {"error": f"unknown tool {name}"}

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


def _user_prompt(req: AgentRequest, question: str) -> str:
    parts = [f"Channel: {req.inbound.channel.value}"]
    if req.customer_name:
        parts.append(f"Customer name: {req.customer_name}")
    if req.previous_contact:
        pc = req.previous_contact
        parts.append(f"Previous contact: {pc.channel} on {pc.occurred_at:%Y-%m-%d} about "
                     f"{pc.subject_or_summary}")
    parts.append(f"Message: {question}")
    return "\n".join(parts)
