"""POST /webhooks/gmail: Pub/Sub push notifications of a Gmail watch.

The push only says "mailbox X changed up to historyId H"; the messages are read through
the Gmail API from the stored cursor (`sync_mailbox`, shared with the fallback poll in
`ingress/gmail_watch.py`). A push behind the cursor whose mailbox is behind it too means a
different mailbox (or one whose history restarted): resync, and say so (log, /health, alert).
2xx goes back only when every new message is on Kafka, so a failure makes Pub/Sub
redeliver and the retry re-reads from the same cursor (messages already published are
recognised by their Gmail id).
"""

from __future__ import annotations

import base64
import binascii
import json
from datetime import UTC, datetime

import anyio.from_thread
from fastapi import APIRouter, HTTPException, Request, Response
from fastapi.concurrency import run_in_threadpool
from googleapiclient.errors import HttpError
from httplib2 import HttpLib2Error
from psycopg.types.json import Jsonb
from pydantic import BaseModel, Field

from fte.gmail import build_gmail_service
from fte.logs import get_logger
from ingress.deps import Services, ServicesDep
from ingress.email_parse import ParsedEmail, screen
from ingress.gmail_sync import fetch_new_messages, mailbox_history_id
from ingress.inbound import publish_once
from ingress.security import PushAuthError, security_event, shared_token_valid, verify_push_token
from schema.events import MAX_BODY_CHARS, Channel, Identifier, IdentifierKind, InboundMessage
from schema.identity import InvalidIdentifier, normalize_email
from schema.queries import channels as q
from schema.topics import EMAIL_INBOUND, topic_name

log = get_logger(__name__)
router = APIRouter(prefix="/webhooks", tags=["webhooks"])

CURSOR_CHANNEL = "email"


class GmailUnavailable(RuntimeError):
    """The Gmail API failed; nothing was stored."""


class PushMessage(BaseModel):
    data: str = Field(max_length=10_000)
    messageId: str | None = None
    publishTime: str | None = None


class PushEnvelope(BaseModel):
    message: PushMessage
    subscription: str | None = None


def decode_notification(envelope: PushEnvelope) -> tuple[str, int]:
    try:
        data = json.loads(base64.b64decode(envelope.message.data, validate=False))
        return str(data["emailAddress"]), int(data["historyId"])
    except (binascii.Error, ValueError, KeyError, TypeError) as exc:
        raise HTTPException(422, "message.data: not a base64 JSON {emailAddress, historyId}") from exc


def email_event(parsed: ParsedEmail, *, fold_gmail: bool) -> InboundMessage:
    sender = normalize_email(parsed.from_address, fold_gmail=fold_gmail)
    body = parsed.body or (parsed.subject or "").strip() or "(empty message)"
    received = (datetime.fromtimestamp(parsed.internal_date_ms / 1000, UTC)
                if parsed.internal_date_ms else datetime.now(UTC))
    return InboundMessage(
        channel=Channel.EMAIL,
        channel_message_id=parsed.gmail_id,
        # Verified only when Gmail saw DMARC pass for this From domain.
        sender=[Identifier(kind=IdentifierKind.EMAIL, value=sender, verified=parsed.dmarc_aligned)],
        sender_name=(parsed.from_name or None) and parsed.from_name[:200],
        subject=(parsed.subject or None) and parsed.subject[:998],
        body=body[:MAX_BODY_CHARS],
        received_at=received,
        thread_id=parsed.thread_id,
        metadata={"message_id_header": parsed.message_id_header, "references": parsed.references,
                  "in_reply_to": parsed.in_reply_to, "to": parsed.to,
                  "from_name": parsed.from_name},
    )


async def authenticate(request: Request, services: Services) -> None:
    settings = services.settings
    token = request.query_params.get("token")
    if token is not None and shared_token_valid(settings, token):
        return
    authorization = request.headers.get("authorization")
    try:
        await run_in_threadpool(verify_push_token, settings, authorization)
    except PushAuthError as exc:
        security_event("gmail", str(exc), request)
        raise HTTPException(403, "push not authenticated") from exc


def gmail_service(services: Services):
    if services.gmail_service is None:
        services.gmail_service = build_gmail_service(services.settings)
    return services.gmail_service


async def load_cursor(services: Services, mailbox: str) -> int | None:
    async with services.db.connection() as conn:
        row = await (await conn.execute(q.CURSOR, {"account": mailbox})).fetchone()
    return int(row["cursor"]) if row else None


async def store_cursor(services: Services, mailbox: str, history_id: int, *, force: bool = False) -> None:
    """Only forward, unless `force` (a resync of a mailbox whose history restarted)."""
    async with services.db.connection() as conn:
        await conn.execute(q.STORE_CURSOR, {"account": mailbox, "cursor": str(history_id), "force": force})


async def note_anomaly(services: Services, mailbox: str, note: str, **detail) -> None:
    """Said three ways: the log, the watch row (/health, System page) and an alert."""
    log.error("gmail.cursor_anomaly", mailbox=mailbox, note=note, **detail)
    async with services.db.connection() as conn:
        await conn.execute(q.WATCH_NOTE, {"account": mailbox, "note": note})
        await conn.execute(q.RAISE_ALERT, {"kind": "intake_email", "value": 1, "threshold": 0,
                                           "detail": Jsonb({"channel": "email", "mailbox": mailbox,
                                                            "note": note, **detail})})


async def dead_letter(services: Services, mailbox: str, gmail_id: str, reason: str) -> bool:
    """Refused or unparseable mail: a dead letter with the raw Gmail message id, once."""
    topic = topic_name(EMAIL_INBOUND, services.settings.TOPIC_PREFIX)
    raw = json.dumps({"gmail_id": gmail_id, "mailbox": mailbox}).encode()
    async with services.db.connection() as conn, conn.transaction():
        if await (await conn.execute(q.DEAD_LETTER_RECEIPT, ("email", gmail_id))).fetchone() is None:
            return False  # dead-lettered (or published) before
        await conn.execute(q.INSERT_DEAD_LETTER, (topic, gmail_id.encode(), raw, reason[:1000]))
    log.warning("gmail.dead_letter", gmail_id=gmail_id, reason=reason)
    return True


async def sync_mailbox(services: Services, mailbox: str, *, pushed_history_id: int | None = None,
                       source: str = "push") -> int:
    """Read and publish what is new since the cursor; returns how many were published.

    Raises GmailUnavailable when the Gmail API fails (nothing stored: the next push or
    poll starts from the same cursor).
    """
    settings = services.settings
    async with services.mailbox_lock(mailbox):
        cursor = await load_cursor(services, mailbox)
        force = False
        try:
            if pushed_history_id is not None and cursor is not None and pushed_history_id <= cursor:
                if pushed_history_id == cursor:
                    await _seen(services, mailbox, source, pushed_history_id)
                    return 0  # already read up to here
                # Behind the cursor: an old notification redelivered, or a mailbox whose
                # history is not the one the cursor came from. Gmail's own historyId tells.
                current = await run_in_threadpool(mailbox_history_id, gmail_service(services))
                await _seen(services, mailbox, source, current)
                if current >= cursor:
                    return 0
                force = True
                await note_anomaly(services, mailbox, f"mailbox history id {current} is behind the "
                                   f"stored cursor {cursor}: not the mailbox the cursor belongs "
                                   "to; resynced", cursor=cursor, mailbox_history_id=current)
            limit = (settings.GMAIL_RESYNC_MAX_MESSAGES if cursor is not None
                     else settings.GMAIL_INITIAL_SYNC_MESSAGES)
            fetched = await run_in_threadpool(_fetch, services, mailbox, cursor, limit, force)
        except (HttpError, HttpLib2Error, OSError) as exc:
            log.warning("gmail.api_error", error=type(exc).__name__, source=source)
            raise GmailUnavailable(type(exc).__name__) from exc
        published = 0
        for parsed in fetched.messages:
            verdict = screen(parsed)  # spam, machine-sent mail, a From that is not one address
            if verdict.action == "skip":
                log.info("gmail.message_skipped", gmail_id=parsed.gmail_id, reason=verdict.reason)
                continue
            if verdict.action == "reject":
                await dead_letter(services, mailbox, parsed.gmail_id, f"refused: {verdict.reason}")
                continue
            try:
                event = email_event(parsed, fold_gmail=settings.EMAIL_FOLD_GMAIL_DOTS)
            except (InvalidIdentifier, ValueError) as exc:
                await dead_letter(services, mailbox, parsed.gmail_id, f"refused: {exc}")
                continue
            published += await publish_once(services, event)
        for gmail_id, reason in fetched.dead:
            await dead_letter(services, mailbox, gmail_id, reason)
        await store_cursor(services, mailbox, fetched.next_cursor, force=force)
        await _seen(services, mailbox, source, fetched.next_cursor)
    log.info("gmail.synced", mailbox=mailbox, source=source, published=published,
             dead=len(fetched.dead), skipped_own=fetched.skipped_own, resynced=fetched.resynced,
             cursor=fetched.next_cursor)
    return published


async def _seen(services: Services, mailbox: str, source: str, history_id: int) -> None:
    async with services.db.connection() as conn:
        await conn.execute(q.WATCH_SEEN, {"account": mailbox, "push": source == "push",
                                          "history_id": history_id})


def _fetch(services: Services, mailbox: str, cursor: int | None, limit: int, force: bool):
    def known(ids: list[str]) -> set[str]:
        return anyio.from_thread.run(_known_ids, services, ids)

    return fetch_new_messages(gmail_service(services), mailbox=mailbox, cursor=cursor,
                              resync_limit=limit, known=known, force_resync=force)


async def _known_ids(services: Services, ids: list[str]) -> set[str]:
    async with services.db.connection() as conn:
        rows = await (await conn.execute(q.KNOWN_GMAIL_IDS, (ids,))).fetchall()
    return {r["channel_message_id"] for r in rows}


@router.post("/gmail", status_code=204, summary="Gmail watch notification (Pub/Sub push)")
async def receive_gmail_push(envelope: PushEnvelope, request: Request, services: ServicesDep) -> Response:
    await authenticate(request, services)
    mailbox, history_id = decode_notification(envelope)
    if mailbox.lower() != services.settings.GMAIL_MAILBOX.lower():
        log.warning("gmail.unknown_mailbox", mailbox=mailbox)
        return Response(status_code=204)  # not ours: acknowledge so Pub/Sub stops pushing it
    try:
        await sync_mailbox(services, mailbox, pushed_history_id=history_id)
    except GmailUnavailable as exc:
        raise HTTPException(503, "Gmail API unavailable", headers={"Retry-After": "10"}) from exc
    return Response(status_code=204)
