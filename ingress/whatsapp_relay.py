"""WhatsApp inbox -> Kafka: publishes each accepted webhook once, surviving restarts.

Runs inside every ingress process (a background task): rows are claimed with FOR UPDATE
SKIP LOCKED, so replicas share the work; a row is marked relayed only after Kafka's ack,
and `publish_once` (the inbound receipt) makes a crash between the ack and the mark
harmless: the row is published again as a duplicate that nothing downstream sees twice.
It wakes on NOTIFY whatsapp_inbox and sweeps every WHATSAPP_RELAY_POLL_S anyway.
"""

from __future__ import annotations

import asyncio
import contextlib

import psycopg
from psycopg_pool import PoolTimeout

from fte.logs import get_logger
from ingress.inbound import publish_once
from ingress.publisher import KafkaUnavailable
from ingress.routes.whatsapp import whatsapp_event
from schema.queries import channels as q
from schema.topics import WHATSAPP_INBOUND, topic_name

log = get_logger(__name__)

BATCH = 100
CONCURRENCY = 4  # publishes in flight (each holds a pool connection until its ack)


async def relay_once(services) -> int:
    """Publish a batch of pending rows; returns how many were relayed.

    Rows are published CONCURRENCY at a time (each waits for its own Kafka ack on its own
    pool connection), so a batch costs a few ack round trips rather than one per row.
    """
    settings = services.settings
    async with services.db.connection() as conn, conn.transaction():
        rows = await (await conn.execute(q.INBOX_CLAIM, {"limit": BATCH})).fetchall()
        done: list[str] = []
        events = []
        for row in rows:
            try:
                events.append(whatsapp_event(row["form"], default_region=settings.DEFAULT_PHONE_REGION,
                                             received_at=row["received_at"]))
            except ValueError as exc:  # accepted then unreadable (e.g. a rule changed)
                await dead_letter(services, row["message_sid"], repr(row["form"]).encode(), str(exc))
                done.append(row["message_sid"])
        failure: Exception | None = None
        for start in range(0, len(events), CONCURRENCY):
            chunk = events[start:start + CONCURRENCY]
            results = await asyncio.gather(*(publish_once(services, e) for e in chunk),
                                           return_exceptions=True)
            for event, result in zip(chunk, results):
                if isinstance(result, KafkaUnavailable):
                    failure = result
                elif isinstance(result, BaseException):
                    raise result
                else:
                    done.append(event.channel_message_id)
            if failure is not None:
                break
        if failure is not None:
            pending = [r["message_sid"] for r in rows if r["message_sid"] not in set(done)]
            await conn.execute(q.INBOX_RELAY_FAILED, (str(failure)[:500], pending))
            log.warning("whatsapp.relay_waiting", pending=len(pending), error=str(failure))
        if done:
            await conn.execute(q.INBOX_RELAYED, (done,))
    return len(done)


async def dead_letter(services, key: str, raw: bytes, reason: str) -> None:
    """A row the relay cannot turn into an event: the dead-letter table, with its key."""
    topic = topic_name(WHATSAPP_INBOUND, services.settings.TOPIC_PREFIX)
    async with services.db.connection() as conn:
        await conn.execute(q.INSERT_DEAD_LETTER, (topic, key.encode(), raw, reason))
    log.warning("whatsapp.dead_letter", channel_message_id=key, reason=reason)


async def run_relay(services, stop: asyncio.Event) -> None:
    settings = services.settings
    wake = asyncio.Event()
    listener = asyncio.create_task(_listen(settings.database_url, wake, stop))
    try:
        while not stop.is_set():
            try:
                while await relay_once(services) == BATCH:
                    pass
            except (psycopg.Error, PoolTimeout, OSError) as exc:
                log.warning("whatsapp.relay_error", error=type(exc).__name__)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), settings.WHATSAPP_RELAY_POLL_S)
            wake.clear()
    finally:
        listener.cancel()


async def _listen(database_url: str, wake: asyncio.Event, stop: asyncio.Event) -> None:
    while not stop.is_set():
        try:
            async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
                await conn.execute("LISTEN whatsapp_inbox")
                async for _ in conn.notifies():
                    wake.set()
        except psycopg.Error:
            await asyncio.sleep(1.0)
