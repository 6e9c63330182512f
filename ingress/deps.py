"""What every route needs, built once per app and reached through `Annotated` dependencies."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from limits import parse
from limits.aio.storage import MemoryStorage
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from fte.settings import Settings
from ingress.publisher import Publisher


class RateLimits:
    """Per-IP and per-identity limits (in memory: one ingress process per limit domain)."""

    def __init__(self, per_ip: str, per_identity: str):
        # Sliding-window counters: O(1) per hit; the moving-window strategy keeps every hit
        # and its expiry sweep costs a thread hop per key, which dominated under load.
        self._limiter = SlidingWindowCounterRateLimiter(MemoryStorage())
        self._per_ip = parse(per_ip)
        self._per_identity = parse(per_identity)

    async def check_ip(self, ip: str) -> None:
        if not await self._limiter.hit(self._per_ip, "ip", ip):
            raise HTTPException(429, "too many requests from this address",
                                headers={"Retry-After": str(self._per_ip.get_expiry())})

    async def check_identity(self, identity: str) -> None:
        if not await self._limiter.hit(self._per_identity, "identity", identity):
            raise HTTPException(429, "too many requests for this sender",
                                headers={"Retry-After": str(self._per_identity.get_expiry())})


@dataclass
class Services:
    settings: Settings
    publisher: Publisher
    db: AsyncConnectionPool
    limits: RateLimits
    # One Gmail sync at a time per mailbox: the stored historyId advances in order.
    mailbox_locks: dict[str, asyncio.Lock] = field(default_factory=dict)
    gmail_service: object | None = None
    # (monotonic time, ok) of the last Kafka + Postgres check, shared by /health callers.
    last_health: tuple[float, bool] = (float("-inf"), False)
    health_lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def mailbox_lock(self, mailbox: str) -> asyncio.Lock:
        return self.mailbox_locks.setdefault(mailbox, asyncio.Lock())


def open_pool(settings: Settings) -> AsyncConnectionPool:
    return AsyncConnectionPool(
        settings.database_url, min_size=min(4, settings.INGRESS_DB_POOL_SIZE),
        max_size=settings.INGRESS_DB_POOL_SIZE,
        # A request waits at most 5 s for a connection, then gets 503 (not a hung socket).
        timeout=5.0, kwargs={"row_factory": dict_row, "autocommit": False}, open=False,
        name="ingress",
    )


def get_services(request: Request) -> Services:
    return request.app.state.services


ServicesDep = Annotated[Services, Depends(get_services)]


def client_ip(request: Request) -> str:
    return request.client.host if request.client else "unknown"


async def limit_by_ip(request: Request, services: ServicesDep) -> None:
    await services.limits.check_ip(client_ip(request))


RateLimitedByIp = Depends(limit_by_ip)
