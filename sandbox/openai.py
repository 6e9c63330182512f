"""A local server speaking the OpenAI HTTP API: `/v1/chat/completions` (with tool calls)
and `/v1/embeddings`, for development and tests through the real `openai` client.

Chat completions follow a script when one is queued (each request consumes one step):
  {"tool_calls": [{"name": "search_knowledge_base", "arguments": {"query": "..."}}]}
  {"content": "final answer"}
  {"status": 500}                      an error response
  {"delay_s": 3, ...}                  wait first (to exercise client timeouts)
With no script it behaves like a tiny model: search the knowledge base for the user's
message, then answer with the first article's opening sentences.

Test helpers: POST /_sandbox/openai/script (a list of steps), GET /_sandbox/openai/requests,
POST /_sandbox/openai/reset. Mount `router` in the sandbox app, or run this module alone:
`python -m sandbox.openai --port 8026`.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import re
import threading
import time
from collections import deque
from typing import Any

from fastapi import APIRouter, FastAPI, Header, HTTPException, Request
from fastapi.responses import JSONResponse

from flows.embeddings import HashingEmbedder


class ScriptState:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.steps: deque[dict[str, Any]] = deque()
        self.requests: list[dict[str, Any]] = []
        self.ids = itertools.count(1)

    def reset(self) -> None:
        with self._lock:
            self.steps.clear()
            self.requests.clear()

    def push(self, steps: list[dict[str, Any]]) -> None:
        with self._lock:
            self.steps.extend(steps)

    def next_step(self) -> dict[str, Any] | None:
        with self._lock:
            return self.steps.popleft() if self.steps else None

    def record(self, kind: str, body: dict[str, Any]) -> None:
        with self._lock:
            self.requests.append({"kind": kind, "body": body, "at": time.time()})


state = ScriptState()
router = APIRouter(tags=["openai sandbox"])
_embedder = HashingEmbedder()


def _require_key(authorization: str | None) -> None:
    if not authorization or not authorization.startswith("Bearer ") or len(authorization) < 10:
        raise HTTPException(401, detail={"error": {"message": "missing API key", "type": "invalid_request_error"}})


def _tokens(text: str) -> int:
    return max(1, len(text) // 4)


def _completion(model: str, message: dict[str, Any], prompt: str) -> dict[str, Any]:
    n = next(state.ids)
    completion_text = json.dumps(message)
    finish = "tool_calls" if message.get("tool_calls") else "stop"
    usage = {"prompt_tokens": _tokens(prompt), "completion_tokens": _tokens(completion_text)}
    usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
    return {"id": f"chatcmpl-sandbox-{n}", "object": "chat.completion", "created": int(time.time()),
            "model": model, "choices": [{"index": 0, "message": message, "finish_reason": finish,
                                         "logprobs": None}], "usage": usage}


def _tool_message(calls: list[dict[str, Any]]) -> dict[str, Any]:
    return {"role": "assistant", "content": None, "tool_calls": [
        {"id": f"call_{next(state.ids)}", "type": "function",
         "function": {"name": c["name"], "arguments": json.dumps(c.get("arguments") or {})}}
        for c in calls]}


def _default_reply(messages: list[dict[str, Any]]) -> dict[str, Any]:
    """Search first, then answer from the first article found (or ask to clarify)."""
    last = messages[-1] if messages else {}
    if last.get("role") == "tool":
        try:
            articles = json.loads(last.get("content") or "{}").get("articles") or []
        except json.JSONDecodeError:
            articles = []
        if articles:
            sentences = re.split(r"(?<=[.!?])\s+", articles[0]["body"])
            return {"role": "assistant", "content": " ".join(sentences[:2])}
        return {"role": "assistant", "content": "Could you tell me a little more about your question?"}
    user = next((m.get("content") or "" for m in reversed(messages) if m.get("role") == "user"), "")
    query = user.split("Message:", 1)[-1].strip()[:300]
    return _tool_message([{"name": "search_knowledge_base", "arguments": {"query": query}}])


@router.post("/v1/chat/completions")
async def create_chat_completion(request: Request, authorization: str | None = Header(None)):
    _require_key(authorization)
    body = await request.json()
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise HTTPException(400, detail={"error": {"message": "messages: required", "param": "messages"}})
    state.record("chat", body)
    step = state.next_step()
    if step and step.get("delay_s"):
        await asyncio.sleep(float(step["delay_s"]))
    elif os.environ.get("SANDBOX_OPENAI_DELAY_MS"):  # a provider's latency, for benchmarks
        await asyncio.sleep(float(os.environ["SANDBOX_OPENAI_DELAY_MS"]) / 1000)
    if step and step.get("status"):
        return JSONResponse({"error": {"message": step.get("message", "sandbox failure"),
                                       "type": "server_error"}}, status_code=int(step["status"]))
    if step and step.get("tool_calls"):
        message = _tool_message(step["tool_calls"])
    elif step and "content" in step:
        message = {"role": "assistant", "content": step["content"]}
    else:
        message = _default_reply(messages)
    return _completion(body.get("model", "sandbox"), message, json.dumps(messages))


@router.post("/v1/embeddings")
async def create_embeddings(request: Request, authorization: str | None = Header(None)):
    _require_key(authorization)
    body = await request.json()
    inputs = body.get("input")
    if isinstance(inputs, str):
        inputs = [inputs]
    if not isinstance(inputs, list) or not all(isinstance(x, str) for x in inputs):
        raise HTTPException(400, detail={"error": {"message": "input: a string or list of strings",
                                                   "param": "input"}})
    dim = int(body.get("dimensions") or 1536)
    state.record("embeddings", {"model": body.get("model"), "n": len(inputs), "dimensions": dim})
    vectors = HashingEmbedder(dim).embed(inputs) if dim != _embedder.dim else _embedder.embed(inputs)
    data = [{"object": "embedding", "index": i, "embedding": v.tolist()} for i, v in enumerate(vectors)]
    tokens = sum(_tokens(x) for x in inputs)
    return {"object": "list", "data": data, "model": body.get("model", "sandbox"),
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}


@router.post("/_sandbox/openai/script")
async def push_script(request: Request):
    steps = await request.json()
    if not isinstance(steps, list):
        raise HTTPException(400, detail="body: a JSON list of steps")
    state.push(steps)
    return {"queued": len(steps)}


@router.get("/_sandbox/openai/requests")
def list_requests():
    return {"requests": list(state.requests)}


@router.post("/_sandbox/openai/reset")
def reset():
    state.reset()
    return {"ok": True}


def create_app() -> FastAPI:
    """Standalone app (the shared sandbox app mounts `router` the same way)."""
    app = FastAPI(title="OpenAI sandbox")
    app.include_router(router)
    return app


if __name__ == "__main__":
    import argparse

    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8026)
    args = parser.parse_args()
    uvicorn.run(create_app(), host=args.host, port=args.port)
