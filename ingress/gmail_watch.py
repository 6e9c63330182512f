"""The Gmail watch, kept alive by the ingress: users.watch at start and again every
GMAIL_WATCH_RENEW_S (Gmail drops a watch after 7 days), the expiry recorded for /health and
the System page; and a fallback poll of history.list when no push came for
GMAIL_FALLBACK_POLL_S while the mailbox has new history (a broken Pub/Sub subscription or
an expired watch then delays mail instead of losing it).

It runs in the ingress because the push route and the poll share the Gmail client, the
mailbox lock, the cursor and the publish-once receipts; with several ingress replicas a
Postgres advisory lock lets one of them do each check.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime, timedelta

import psycopg
from fastapi.concurrency import run_in_threadpool
from googleapiclient.errors import HttpError
from httplib2 import HttpLib2Error
from psycopg_pool import PoolTimeout

from fte.logs import get_logger
from ingress.gmail_sync import mailbox_history_id
from ingress.intake_health import raise_alerts
from ingress.routes.gmail import GmailUnavailable, gmail_service, load_cursor, store_cursor, sync_mailbox
from schema.queries import channels as q

log = get_logger(__name__)

LOCK_KEY = 0x66746567776174  # "ftegwat": one watcher per deployment at a time


def watch_due(state: dict | None, now: datetime, renew_s: float) -> bool:
    """Renew when never watched, renewed longer ago than `renew_s`, or expiring within it."""
    if not state or state.get("expires_at") is None or state.get("renewed_at") is None:
        return True
    return (now - state["renewed_at"] >= timedelta(seconds=renew_s)
            or state["expires_at"] - now <= timedelta(seconds=renew_s))


def poll_due(state: dict | None, now: datetime, cursor: int | None, mailbox_id: int,
             fallback_s: float, cursor_at: datetime | None = None) -> bool:
    """Poll when the mailbox is ahead of the cursor and neither a push nor a sync happened
    for `fallback_s` (a fresh cursor counts as a sync: its mail may still be pushed)."""
    if cursor is None or mailbox_id <= cursor:
        return False
    state = state or {}
    last = max([t for t in (state.get("last_push_at"), state.get("last_poll_at"), cursor_at) if t],
               default=None)
    return last is None or now - last >= timedelta(seconds=fallback_s)


def _watch(services, topic: str) -> dict:
    return gmail_service(services).users().watch(userId="me", body={
        "topicName": topic, "labelIds": ["INBOX"], "labelFilterBehavior": "INCLUDE"}).execute(num_retries=3)


async def check_once(services, now: datetime | None = None) -> str:
    """One check of the watch and the mailbox; returns what it did (for logs and tests)."""
    settings = services.settings
    mailbox = settings.GMAIL_MAILBOX
    now = now or datetime.now(UTC)
    async with services.db.connection() as conn:
        state = await (await conn.execute(q.WATCH_STATE, {"account": mailbox})).fetchone()
    did = []
    async with services.mailbox_lock(mailbox):
        if settings.GMAIL_PUBSUB_TOPIC and watch_due(state, now, settings.GMAIL_WATCH_RENEW_S):
            response = await run_in_threadpool(_watch, services, settings.GMAIL_PUBSUB_TOPIC)
            expires = datetime.fromtimestamp(int(response["expiration"]) / 1000, UTC)
            history_id = int(response["historyId"])
            async with services.db.connection() as conn:
                await conn.execute(q.WATCH_RENEWED, {"account": mailbox, "expires_at": expires,
                                                     "history_id": history_id})
            if await load_cursor(services, mailbox) is None:
                await store_cursor(services, mailbox, history_id)  # first start: from now on
            log.info("gmail.watch_renewed", mailbox=mailbox, expires_at=expires.isoformat())
            did.append("watch")
        current = await run_in_threadpool(mailbox_history_id, gmail_service(services))
        cursor = await load_cursor(services, mailbox)
        if cursor is None:  # first start without a watch: read mail from now on
            await store_cursor(services, mailbox, current)
            cursor = current
            did.append("cursor")
        async with services.db.connection() as conn:
            row = await (await conn.execute(q.CURSOR, {"account": mailbox})).fetchone()
        cursor_at = row["updated_at"] if row else None
    async with services.db.connection() as conn:
        await conn.execute(q.WATCH_MAILBOX_ID, {"account": mailbox, "history_id": current})
    if poll_due(state, now, cursor, current, settings.GMAIL_FALLBACK_POLL_S, cursor_at):
        published = await sync_mailbox(services, mailbox, source="poll")
        log.info("gmail.fallback_poll", mailbox=mailbox, published=published, cursor=cursor,
                 mailbox_history_id=current)
        did.append("poll")
    return "+".join(did) or "idle"


async def run_gmail_watch(services, stop: asyncio.Event) -> None:
    """Every GMAIL_SYNC_CHECK_S: the watch and the fallback poll, then the intake alerts."""
    settings = services.settings
    gmail = bool(settings.GMAIL_DISCOVERY_URL or settings.GMAIL_CREDENTIALS_FILE)
    if not gmail:
        log.info("gmail.watch_disabled", reason="no Gmail API configured")
    while not stop.is_set():
        try:
            async with services.db.connection() as conn, conn.transaction():
                locked = await (await conn.execute("SELECT pg_try_advisory_xact_lock(%s) AS ok",
                                                   (LOCK_KEY,))).fetchone()
                if locked["ok"]:
                    if gmail:
                        try:
                            await check_once(services)
                        except (GmailUnavailable, HttpError, HttpLib2Error, OSError) as exc:
                            log.warning("gmail.watch_check_failed", error=type(exc).__name__)
                    await raise_alerts(services)
        except (psycopg.Error, PoolTimeout) as exc:
            log.warning("gmail.watch_check_failed", error=type(exc).__name__)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), settings.GMAIL_SYNC_CHECK_S)
