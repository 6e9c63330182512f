"""POST /webhooks/whatsapp: Twilio's inbound WhatsApp messages; /webhooks/whatsapp/status:
Twilio's delivery status callbacks for our replies.

Twilio does not retry a messaging webhook that answered 429 or 503 (by default), so a
correctly signed message is accepted durably: one insert into `whatsapp_inbox` (keyed by
MessageSid, so Twilio's retries add nothing), answered 200 when it commits; the relay
(`ingress/whatsapp_relay.py`) publishes it to Kafka. Only when Postgres itself is down does
this answer 503 (then Twilio's fallback URL, if the operator set one, gets the message).
"""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, HTTPException, Request, Response
from psycopg.types.json import Jsonb
from pydantic import ValidationError

from fte.logs import get_logger
from ingress.delivery_status import record_status
from ingress.deps import ServicesDep
from ingress.security import security_event, twilio_signature_valid
from schema.events import Channel, Identifier, IdentifierKind, InboundMessage, describe_error
from schema.identity import InvalidIdentifier, normalize_phone
from schema.queries import channels as q

log = get_logger(__name__)
router = APIRouter(prefix="/webhooks", tags=["webhooks"])

EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'
MAX_MEDIA = 10


def whatsapp_event(form: dict[str, str], *, default_region: str,
                   received_at: datetime | None = None) -> InboundMessage:
    """The InboundMessage for Twilio's form fields; ValueError names the bad field."""
    sid = form.get("MessageSid", "").strip()
    if not sid:
        raise ValueError("MessageSid: required")
    try:
        phone = normalize_phone(form.get("From", ""), default_region=default_region)
    except InvalidIdentifier as exc:
        raise ValueError(f"From: {exc}") from exc
    try:
        media_count = min(int(form.get("NumMedia") or 0), MAX_MEDIA)
    except ValueError as exc:
        raise ValueError("NumMedia: not a number") from exc
    media = [form[f"MediaUrl{i}"] for i in range(media_count) if form.get(f"MediaUrl{i}")]
    body = (form.get("Body") or "").strip()
    if not body and media:
        body = f"[{len(media)} attachment(s)]"
    if not body:
        raise ValueError("Body: empty message")
    return InboundMessage(
        channel=Channel.WHATSAPP,
        channel_message_id=sid,
        # Only built after the Twilio signature checked out: Twilio vouches for the sender.
        sender=[Identifier(kind=IdentifierKind.PHONE, value=phone, verified=True)],
        sender_name=(form.get("ProfileName") or None),
        body=body,
        received_at=received_at or datetime.now(UTC),
        metadata={"profile_name": form.get("ProfileName"), "to": form.get("To"),
                  "media_urls": media},
    )


async def signed_form(request: Request, services, webhook: str) -> dict[str, str]:
    form = {k: v for k, v in (await request.form()).multi_items() if isinstance(v, str)}
    if not twilio_signature_valid(services.settings, request, form):
        security_event(webhook, "bad or missing X-Twilio-Signature", request)
        raise HTTPException(403, "invalid signature")
    return form


@router.post("/whatsapp", summary="Twilio WhatsApp inbound message webhook")
async def receive_whatsapp(request: Request, services: ServicesDep) -> Response:
    form = await signed_form(request, services, "whatsapp")
    try:
        event = whatsapp_event(form, default_region=services.settings.DEFAULT_PHONE_REGION)
    except ValidationError as exc:
        raise HTTPException(422, describe_error(exc)) from exc
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from exc
    # Durable before 200: the inbox row commits (or Postgres is down: 503 by the app's handler).
    async with services.db.connection() as conn, conn.transaction():
        await conn.execute(q.INBOX_INSERT, (event.channel_message_id, Jsonb(form)))
        await conn.execute(q.INBOX_NOTIFY)
    log.info("whatsapp.accepted", channel_message_id=event.channel_message_id)
    return Response(EMPTY_TWIML, media_type="application/xml")


@router.post("/whatsapp/status", status_code=204,
             summary="Twilio delivery status callback for our WhatsApp replies")
async def receive_whatsapp_status(request: Request, services: ServicesDep) -> Response:
    form = await signed_form(request, services, "whatsapp_status")
    sid = (form.get("MessageSid") or form.get("SmsSid") or "").strip()
    status = (form.get("MessageStatus") or form.get("SmsStatus") or "").strip().lower()
    if not sid:
        raise HTTPException(422, "MessageSid: required")
    try:
        await record_status(services, sid=sid, status=status, error_code=form.get("ErrorCode") or None,
                            error_message=form.get("ErrorMessage") or None)
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from exc
    return Response(status_code=204)
