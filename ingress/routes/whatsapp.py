"""POST /webhooks/whatsapp: Twilio's inbound WhatsApp messages."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, HTTPException, Request, Response
from pydantic import ValidationError

from fte.logs import get_logger
from ingress.deps import ServicesDep
from ingress.inbound import publish_once
from ingress.security import security_event, twilio_signature_valid
from schema.events import Channel, Identifier, IdentifierKind, InboundMessage, describe_error
from schema.identity import InvalidIdentifier, normalize_phone

log = get_logger(__name__)
router = APIRouter(prefix="/webhooks", tags=["webhooks"])

EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'
MAX_MEDIA = 10


def whatsapp_event(form: dict[str, str], *, default_region: str) -> InboundMessage:
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
        received_at=datetime.now(UTC),
        metadata={"profile_name": form.get("ProfileName"), "to": form.get("To"),
                  "media_urls": media},
    )


@router.post("/whatsapp", summary="Twilio WhatsApp inbound message webhook")
async def receive_whatsapp(request: Request, services: ServicesDep) -> Response:
    form = {k: v for k, v in (await request.form()).multi_items() if isinstance(v, str)}
    if not twilio_signature_valid(services.settings, request, form):
        security_event("whatsapp", "bad or missing X-Twilio-Signature", request)
        raise HTTPException(403, "invalid signature")
    try:
        event = whatsapp_event(form, default_region=services.settings.DEFAULT_PHONE_REGION)
    except ValidationError as exc:
        raise HTTPException(422, describe_error(exc)) from exc
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from exc
    await services.limits.check_identity(f"phone:{event.sender[0].value}")
    await publish_once(services, event)
    return Response(EMPTY_TWIML, media_type="application/xml")
