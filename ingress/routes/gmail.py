"""POST /webhooks/gmail: Pub/Sub push notifications of a Gmail watch.

The push only says "mailbox X changed up to historyId H"; the messages are read through
the Gmail API from the stored cursor. 2xx goes back only when every new message is on
Kafka, so a failure makes Pub/Sub redeliver and the retry re-reads from the same cursor
(messages already published are recognised by their Gmail id).
"""

from __future__ import annotations

import base64
import binascii
import json
from datetime import UTC, datetime

from fastapi import APIRouter, HTTPException, Request, Response
from fastapi.concurrency import run_in_threadpool
from googleapiclient.errors import HttpError
from httplib2 import HttpLib2Error
from pydantic import BaseModel, Field

from fte.gmail import build_gmail_service
from fte.logs import get_logger
from ingress.deps import Services, ServicesDep
from ingress.email_parse import ParsedEmail, screen
from ingress.gmail_sync import fetch_new_messages
from ingress.inbound import dead_letter_once, publish_once
from ingress.security import PushAuthError, security_event, shared_token_valid, verify_push_token
from schema.events import MAX_BODY_CHARS, Channel, Identifier, IdentifierKind, InboundMessage
from schema.identity import InvalidIdentifier, normalize_email

log = get_logger(__name__)
router = APIRouter(prefix="/webhooks", tags=["webhooks"])

CURSOR_CHANNEL = "email"


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
        row = await (await conn.execute(
            "SELECT cursor FROM channel_cursors WHERE channel = %s AND account = %s",
            (CURSOR_CHANNEL, mailbox))).fetchone()
    return int(row["cursor"]) if row else None


async def store_cursor(services: Services, mailbox: str, history_id: int) -> None:
    async with services.db.connection() as conn:
        await conn.execute(
            """INSERT INTO channel_cursors (channel, account, cursor) VALUES (%s, %s, %s)
               ON CONFLICT (channel, account) DO UPDATE
               SET cursor = EXCLUDED.cursor, updated_at = now()
               WHERE channel_cursors.cursor::bigint < EXCLUDED.cursor::bigint""",
            (CURSOR_CHANNEL, mailbox, str(history_id)))


@router.post("/gmail", status_code=204, summary="Gmail watch notification (Pub/Sub push)")
async def receive_gmail_push(envelope: PushEnvelope, request: Request, services: ServicesDep) -> Response:
    await authenticate(request, services)
    mailbox, history_id = decode_notification(envelope)
    settings = services.settings
    if mailbox.lower() != settings.GMAIL_MAILBOX.lower():
        log.warning("gmail.unknown_mailbox", mailbox=mailbox)
        return Response(status_code=204)  # not ours: acknowledge so Pub/Sub stops pushing it
    async with services.mailbox_lock(mailbox):
        cursor = await load_cursor(services, mailbox)
        if cursor is not None and history_id <= cursor:
            return Response(status_code=204)  # already read past this point
        try:
            fetched = await run_in_threadpool(
                _fetch_locked, services, mailbox, cursor, settings.GMAIL_RESYNC_MAX_MESSAGES)
        except (HttpError, HttpLib2Error, OSError) as exc:
            log.warning("gmail.api_error", error=type(exc).__name__)
            raise HTTPException(503, "Gmail API unavailable", headers={"Retry-After": "10"}) from exc
        published = 0
        for parsed in fetched.messages:
            verdict = screen(parsed)
            if verdict.action == "skip":
                log.info("gmail.message_skipped", gmail_id=parsed.gmail_id, reason=verdict.reason)
                continue
            if verdict.action == "reject":
                await dead_letter_once(services, "email", parsed.gmail_id, json.dumps(
                    {"gmail_id": parsed.gmail_id, "thread_id": parsed.thread_id,
                     "subject": parsed.subject}).encode(), f"email intake: {verdict.reason}")
                continue
            try:
                event = email_event(parsed, fold_gmail=settings.EMAIL_FOLD_GMAIL_DOTS)
            except (InvalidIdentifier, ValueError) as exc:
                log.warning("gmail.message_refused", gmail_id=parsed.gmail_id, reason=str(exc))
                continue
            published += await publish_once(services, event)
        await store_cursor(services, mailbox, fetched.next_cursor)
    log.info("gmail.synced", mailbox=mailbox, published=published, skipped_own=fetched.skipped_own,
             resynced=fetched.resynced, cursor=fetched.next_cursor)
    return Response(status_code=204)


def _fetch_locked(services: Services, mailbox: str, cursor: int | None, limit: int):
    return fetch_new_messages(gmail_service(services), mailbox=mailbox, cursor=cursor,
                              resync_limit=limit)
