"""The support agent: request/result types, the local (retrieval) agent and the OpenAI agent."""

from flows.agent.base import (
    Agent,
    AgentRequest,
    AgentResult,
    HistoryItem,
    PreviousContact,
)
from flows.agent.factory import build_agent

__all__ = ["Agent", "AgentRequest", "AgentResult", "HistoryItem", "PreviousContact", "build_agent"]
