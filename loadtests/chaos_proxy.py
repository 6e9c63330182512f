"""A reverse proxy in front of the local channel APIs that injects their failures.

The dispatcher and the ingress reach the sandbox's Gmail and Twilio APIs through it during a
chaos run, so outages look like the real ones from the client's side: `503` storms (Twilio),
`5xx` answers (Gmail), or 30-second responses (a slow API), each for a time window. Requests
are forwarded unchanged otherwise; the sandbox keeps the call logs the verdict reads.
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

API_PREFIXES = {"twilio": "/2010-04-01/", "gmail": "/gmail/"}
HOP_HEADERS = {"host", "content-length", "transfer-encoding", "connection", "keep-alive"}


@dataclass
class Fault:
    until: float = 0.0  # monotonic
    status: int | None = None  # answer this instead of forwarding
    delay_s: float = 0.0  # wait this long, then forward


@dataclass
class ProxyState:
    faults: dict[str, Fault] = field(default_factory=dict)
    injected: dict[str, int] = field(default_factory=dict)  # requests affected, per api
    lock: threading.Lock = field(default_factory=threading.Lock)

    def set(self, api: str, seconds: float, *, status: int | None = None, delay_s: float = 0.0) -> None:
        with self.lock:
            self.faults[api] = Fault(time.monotonic() + seconds, status, delay_s)

    def active(self, path: str) -> tuple[str, Fault] | None:
        now = time.monotonic()
        with self.lock:
            for api, prefix in API_PREFIXES.items():
                fault = self.faults.get(api)
                if path.startswith(prefix) and fault and fault.until > now:
                    self.injected[api] = self.injected.get(api, 0) + 1
                    return api, fault
        return None


def create_app(upstream: str, state: ProxyState) -> Starlette:
    client = httpx.AsyncClient(base_url=upstream, timeout=120.0)

    async def forward(request: Request) -> Response:
        hit = state.active(request.url.path)
        if hit is not None:
            _api, fault = hit
            if fault.status is not None:
                return Response(b'{"message": "injected fault"}', status_code=fault.status,
                                media_type="application/json")
            await asyncio.sleep(fault.delay_s)
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_HEADERS}
        try:
            upstream_response = await client.request(
                request.method, request.url.path, params=request.query_params, headers=headers,
                content=await request.body())
        except httpx.HTTPError as exc:  # the sandbox itself is not up (yet)
            return Response(f'{{"message": "upstream: {type(exc).__name__}"}}'.encode(), status_code=502,
                            media_type="application/json")
        body = upstream_response.content
        # Discovery documents name the API's root: keep the client talking to the proxy.
        if request.url.path.startswith("/discovery"):
            body = body.replace(upstream.encode(), str(request.base_url).rstrip("/").encode())
        out_headers = {k: v for k, v in upstream_response.headers.items()
                       if k.lower() not in HOP_HEADERS and k.lower() != "content-encoding"}
        return Response(body, status_code=upstream_response.status_code, headers=out_headers)

    methods = ["GET", "POST", "PUT", "DELETE", "PATCH"]
    return Starlette(routes=[Route("/{path:path}", forward, methods=methods)])
