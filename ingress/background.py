"""Background work of every ingress process: the WhatsApp inbox relay and the Gmail watch
(renewal, fallback poll). Both are safe with several replicas (row locks, advisory lock)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from ingress.gmail_watch import run_gmail_watch
from ingress.whatsapp_relay import run_relay


@contextlib.asynccontextmanager
async def background(services) -> AsyncIterator[None]:
    if not services.settings.INGRESS_BACKGROUND:
        yield
        return
    stop = asyncio.Event()
    tasks = [asyncio.create_task(run_relay(services, stop), name="whatsapp-relay"),
             asyncio.create_task(run_gmail_watch(services, stop), name="gmail-watch")]
    try:
        yield
    finally:
        stop.set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
