"""The local agent against the real Postgres knowledge base, and the OpenAI agent through
the real `openai` client against the local OpenAI-compatible sandbox server."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import numpy as np
import openai
import pytest

from flows.agent import AgentRequest, HistoryItem, build_agent
from flows.agent.local import CLARIFY_OPENING, LocalAgent
from flows.agent.openai_agent import OpenAIAgent
from flows.embeddings import HashingEmbedder, OpenAIEmbedder
from flows.knowledge import KnowledgeBase
from fte.settings import Settings
from schema.db import connect
from schema.events import EscalationReason, InboundMessage


def request(text: str, *, channel="web", history=(), subject=None) -> AgentRequest:
    inbound = InboundMessage(channel=channel, channel_message_id=uuid.uuid4().hex,
                             sender=[{"kind": "email", "value": "ana@example.com"}], subject=subject,
                             body=text, received_at=datetime.now(UTC))
    return AgentRequest(inbound=inbound, customer_id=1, customer_name="Ana", history=list(history))


@pytest.fixture(scope="module")
def kb(kb_database_url):
    return KnowledgeBase(kb_database_url, HashingEmbedder())


@pytest.fixture(scope="module")
def local(kb, routing_model):
    return LocalAgent(kb, routing_model[0])


# --- local agent -------------------------------------------------------------------------
def article_body(url, slug):
    with connect(url) as conn:
        return " ".join(r[0] for r in conn.execute(
            "SELECT body FROM knowledge_base WHERE slug = %s ORDER BY chunk_index", (slug,)))


@pytest.mark.parametrize("question, slug", [
    ("I forgot my password, how do I reset it?", "password-recovery"),
    ("Which payment methods do you accept?", "payment-methods"),
    ("How do I unsubscribe from the newsletter?", "newsletter"),
])
def test_local_agent_answers_only_with_sentences_of_the_right_article(local, kb_database_url, question, slug):
    result = local.respond(request(question))
    assert result.action == "answer" and result.kb_hit and result.provider == "local"
    assert result.kb_slugs[0] == slug and result.kb_top_score >= local.thresholds.retrieval_min
    body = " ".join(article_body(kb_database_url, slug).split())
    for line in result.text.splitlines():
        assert " ".join(line.split()) in body  # nothing but the article's own text
    assert "#" not in result.text


def test_local_agent_reads_the_new_part_of_an_email_reply(local):
    text = ("How do I reset my password?\n\nOn Mon, 3 Mar 2026 Northwind Goods <support@x> wrote:\n"
            "> which payment methods do you accept\n> newsletter")
    result = local.respond(request(text, channel="email", subject="Re: Your question"))
    assert result.kb_slugs[0] == "password-recovery"


def test_local_agent_asks_instead_of_guessing_and_escalates_after_asking(local):
    first = local.respond(request("zxqv blorp wibble"))
    assert first.action == "clarify" and not first.kb_hit and CLARIFY_OPENING in first.text
    history = [HistoryItem("web", "inbound", "Ana", "zxqv blorp wibble", datetime.now(UTC)),
               HistoryItem("web", "outbound", "agent", first.text, datetime.now(UTC))]
    second = local.respond(request("flibber zonk", history=history))
    assert second.action == "escalate" and second.reason is EscalationReason.LOW_CONFIDENCE


def test_local_agent_is_thread_safe_and_batches(local):
    questions = ["how long does delivery take?", "I forgot my password", "do you accept paypal?"] * 6
    with ThreadPoolExecutor(6) as pool:
        parallel = list(pool.map(lambda q: local.respond(request(q)), questions))
    batched = local.respond_many([request(q) for q in questions])
    assert [(r.action, r.kb_slugs) for r in parallel] == [(r.action, r.kb_slugs) for r in batched]


def test_build_agent_is_local_without_a_key(kb_database_url):
    agent = build_agent(Settings(DATABASE_URL=kb_database_url, OPENAI_API_KEY=None))
    assert isinstance(agent, LocalAgent)


# --- OpenAI agent via the real client against the sandbox server --------------------------
def openai_agent(base_url, kb, database_url=None, *, timeout=5.0, fallback="local", **kw):
    client = openai.OpenAI(api_key="sk-test-sandbox", base_url=f"{base_url}/v1", timeout=timeout,
                           max_retries=0)
    return OpenAIAgent(client, "gpt-4o-mini", kb, database_url=database_url,
                       fallback=LocalAgent(kb) if fallback == "local" else None, backoff_s=0.01, **kw)


def test_openai_agent_runs_the_scripted_tool_loop(openai_sandbox, sandbox_state, kb):
    sandbox_state.push([
        {"tool_calls": [{"name": "get_customer_history", "arguments": {"limit": 5}},
                        {"name": "search_knowledge_base", "arguments": {"query": "reset password"}}]},
        {"content": "Choose Forgot password on the sign-in page; the link is valid for 1 hour."},
    ])
    result = openai_agent(openai_sandbox, kb).respond(request("I can't log in, forgot my password"))
    assert result.action == "answer" and result.kb_hit and result.provider == "openai:gpt-4o-mini"
    assert result.kb_slugs[0] == "password-recovery" and result.tokens > 0
    assert result.text.startswith("Choose Forgot password")
    chats = [r["body"] for r in sandbox_state.requests if r["kind"] == "chat"]
    assert len(chats) == 2
    tool_names = {t["function"]["name"] for t in chats[0]["tools"]}
    assert tool_names == {"search_knowledge_base", "get_customer_history", "create_ticket", "escalate_to_human"}
    tool_msgs = [m for m in chats[1]["messages"] if m["role"] == "tool"]
    assert len(tool_msgs) == 2 and "password-recovery" in tool_msgs[1]["content"]


def test_openai_agent_escalates_when_the_model_calls_escalate_to_human(openai_sandbox, sandbox_state, kb):
    sandbox_state.push([{"tool_calls": [{"name": "escalate_to_human",
                                         "arguments": {"reason": "wants a person", "summary": "Customer asks for a manager"}}]}])
    result = openai_agent(openai_sandbox, kb).respond(request("get me your manager"))
    # free text is not one of our reasons: filed as the agent's, the model's words kept
    assert result.action == "escalate" and result.reason is EscalationReason.AGENT
    assert result.text == "wants a person: Customer asks for a manager"


def test_openai_agent_keeps_the_models_escalation_reason(openai_sandbox, sandbox_state, kb):
    sandbox_state.push([{"tool_calls": [{"name": "escalate_to_human",
                                         "arguments": {"reason": "refund", "summary": "Wants the 40 GBP back"}}]}])
    result = openai_agent(openai_sandbox, kb).respond(request("the vase broke, pay me back"))
    assert result.action == "escalate" and result.reason is EscalationReason.REFUND
    assert result.text == "Wants the 40 GBP back"


def test_openai_agent_create_ticket_records_a_ticket(openai_sandbox, sandbox_state, kb, kb_database_url):
    sandbox_state.push([
        {"tool_calls": [{"name": "create_ticket", "arguments": {"summary": "Call back about the sofa",
                                                                "priority": "high"}}]},
        {"content": "I have recorded a follow-up for our team."},
    ])
    req = request("please have someone look at my sofa order")
    openai_agent(openai_sandbox, kb, database_url=kb_database_url).respond(req)
    with connect(kb_database_url) as conn:
        row = conn.execute("SELECT subject, priority, category FROM tickets WHERE source_inbound_key = %s",
                           (f"{req.inbound.inbound_key}:agent-ticket",)).fetchone()
    assert row == ("Call back about the sofa", "high", "follow-up")
    chats = [r["body"] for r in sandbox_state.requests if r["kind"] == "chat"]
    tool_msg = [m for m in chats[1]["messages"] if m["role"] == "tool"][0]
    assert '"status": "recorded"' in tool_msg["content"]


def test_openai_agent_prompt_carries_channel_length_rules_and_routing_in_front(
        openai_sandbox, sandbox_state, kb, routing_model):
    sandbox_state.push([{"content": "Standard delivery takes 3-5 working days."}])
    agent = openai_agent(openai_sandbox, kb, router=routing_model[0])
    agent.respond(request("how long does delivery take?", channel="whatsapp"))
    system = [r["body"] for r in sandbox_state.requests if r["kind"] == "chat"][0]["messages"][0]["content"]
    assert "WhatsApp" in system and "300" in system and "words" in system
    before = len(sandbox_state.requests)
    chatter = agent.respond(request("what's the capital of France?"))
    assert chatter.action == "clarify" and len(sandbox_state.requests) == before  # no model call


def test_openai_agent_retries_a_500_then_falls_back_to_the_local_agent(openai_sandbox, sandbox_state, kb):
    sandbox_state.push([{"status": 500}] * 3)
    result = openai_agent(openai_sandbox, kb, attempts=3).respond(request("Which payment methods do you accept?"))
    assert len([r for r in sandbox_state.requests if r["kind"] == "chat"]) == 3
    assert result.provider == "local (fallback)" and result.action == "answer"
    assert result.kb_slugs[0] == "payment-methods"


def test_openai_agent_recovers_when_a_retry_succeeds(openai_sandbox, sandbox_state, kb):
    sandbox_state.push([{"status": 503}, {"content": "We accept cards and PayPal."}])
    result = openai_agent(openai_sandbox, kb, attempts=3).respond(request("payment methods?"))
    assert result.provider == "openai:gpt-4o-mini" and result.text == "We accept cards and PayPal."
    assert result.action == "clarify"  # no article was searched, so not a KB answer


def test_openai_agent_times_out_then_escalates_without_a_fallback(openai_sandbox, sandbox_state, kb):
    sandbox_state.push([{"delay_s": 1.5, "content": "too late"}] * 2)
    agent = openai_agent(openai_sandbox, kb, timeout=0.3, fallback=None, attempts=2)
    result = agent.respond(request("how long does delivery take?"))
    assert result.action == "escalate" and result.reason is EscalationReason.AGENT


def test_openai_agent_tool_loop_is_bounded(openai_sandbox, sandbox_state, kb):
    sandbox_state.push([{"tool_calls": [{"name": "search_knowledge_base", "arguments": {"query": "x"}}]}] * 3)
    result = openai_agent(openai_sandbox, kb, max_steps=3).respond(request("Which payment methods do you accept?"))
    assert len([r for r in sandbox_state.requests if r["kind"] == "chat"]) == 3
    assert result.provider == "local (fallback)"


def test_openai_agent_result_is_cached_so_a_replay_does_not_call_again(openai_sandbox, sandbox_state, kb,
                                                                       kb_database_url):
    agent = openai_agent(openai_sandbox, kb, kb_database_url)
    req = request("how do I subscribe to the newsletter?")
    first = agent.respond(req)  # default sandbox behaviour: search, then answer from the article
    assert first.action == "answer" and first.kb_slugs[0] == "newsletter"
    calls = len(sandbox_state.requests)
    again = openai_agent(openai_sandbox, kb, kb_database_url).respond(req)  # e.g. after a restart
    assert again == first and len(sandbox_state.requests) == calls
    with connect(kb_database_url) as conn:
        row = conn.execute("SELECT provider, tokens FROM agent_results WHERE inbound_key = %s",
                           (req.inbound.inbound_key,)).fetchone()
    assert row == ("openai:gpt-4o-mini", first.tokens)


def test_build_agent_uses_openai_when_configured(openai_sandbox, sandbox_state, kb_database_url):
    agent = build_agent(Settings(DATABASE_URL=kb_database_url, OPENAI_API_KEY="sk-test-sandbox",
                                 OPENAI_BASE_URL=f"{openai_sandbox}/v1"))
    assert isinstance(agent, OpenAIAgent)
    assert agent.kb.embedder.name.startswith("openai:")


def test_openai_embedder_through_the_real_client(openai_sandbox, sandbox_state):
    client = openai.OpenAI(api_key="sk-test-sandbox", base_url=f"{openai_sandbox}/v1", max_retries=0)
    m = OpenAIEmbedder(client, "text-embedding-3-small", 384, batch_size=2).embed(["a parcel", "b", "refund"])
    assert m.shape == (3, 384) and np.allclose(np.linalg.norm(m, axis=1), 1.0, atol=1e-5)
    embeds = [r for r in sandbox_state.requests if r["kind"] == "embeddings"]
    assert [e["body"]["n"] for e in embeds] == [2, 1] and embeds[0]["body"]["dimensions"] == 384


def test_sandbox_rejects_requests_without_a_key_or_messages(openai_sandbox):
    import httpx

    r = httpx.post(f"{openai_sandbox}/v1/chat/completions", json={"model": "m", "messages": []})
    assert r.status_code == 401
    r = httpx.post(f"{openai_sandbox}/v1/chat/completions", json={"model": "m"},
                   headers={"Authorization": "Bearer sk-test-sandbox"})
    assert r.status_code == 400 and "messages" in r.text
