"""`build_agent(settings)`: the OpenAI agent when a key is configured, else the local one."""

from __future__ import annotations

from flows.agent.local import LocalAgent
from flows.agent.memo import MemoEmbedder
from flows.embeddings import build_embedder, openai_client
from flows.knowledge import KnowledgeBase


def build_agent(settings, router=None):
    """`router`: the loaded routing model (flows/routing.py), put in front of either agent."""
    kb = KnowledgeBase(settings.database_url, MemoEmbedder(build_embedder(settings)))
    local = LocalAgent(kb, router)
    key = settings.OPENAI_API_KEY.get_secret_value() if settings.OPENAI_API_KEY else ""
    if not key:
        return local
    from flows.agent.openai_agent import OpenAIAgent

    return OpenAIAgent(openai_client(settings), settings.OPENAI_MODEL, kb, fallback=local,
                       database_url=settings.database_url, router=router)
