"""The web support form: submit a request, read a ticket, reply on it.

A ticket id is the customer's only key to the ticket (128 random bits): reading and
replying need nothing else, so the page shows only what belongs to that ticket — its web
messages and our replies to them, never the customer's other channels or conversations.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime

from fastapi import APIRouter, HTTPException, Path

from fte.logs import get_logger
from ingress.deps import RateLimitedByIp, ServicesDep
from ingress.inbound import produce, publish_once
from ingress.models import (
    SupportRequestCreate,
    TicketContact,
    TicketCreated,
    TicketPublic,
    TicketReplyAccepted,
    TicketReplyCreate,
)
from schema.events import Channel, Identifier, IdentifierKind, InboundMessage
from schema.identity import normalize_email
from sinks.verification import mask

log = get_logger(__name__)
router = APIRouter(prefix="/support", tags=["support"])

TICKET_ID = r"^T-[0-9A-Za-z-]{8,60}$"

_INSERT_TICKET = """
INSERT INTO tickets (id, channel, subject, category, status, source_inbound_key,
                     contact_email, contact_phone, contact_name)
VALUES (%s, 'web', %s, %s, 'open', %s, %s, %s, %s)
"""


def new_ticket_id() -> str:
    """Unguessable (128 random bits): the id is what lets a customer read the ticket."""
    return f"T-{secrets.token_hex(16).upper()}"


def _sender(email: str, phone: str | None, *, fold_gmail: bool) -> list[Identifier]:
    sender = [Identifier(kind=IdentifierKind.EMAIL, value=normalize_email(email, fold_gmail=fold_gmail))]
    if phone:
        sender.append(Identifier(kind=IdentifierKind.PHONE, value=phone))
    return sender


def web_event(ticket_id: str, form: SupportRequestCreate, *, fold_gmail: bool) -> InboundMessage:
    sender = _sender(form.email, form.phone, fold_gmail=fold_gmail)
    return InboundMessage(
        channel=Channel.WEB,
        channel_message_id=ticket_id,
        ticket_id=ticket_id,
        thread_id=ticket_id,
        sender=sender,
        sender_name=form.name,
        subject=form.subject,
        body=form.message,
        received_at=datetime.now(UTC),
        metadata={"category": form.category, "name": form.name},
    )


@router.post("/submit", status_code=202, response_model=TicketCreated,
             dependencies=[RateLimitedByIp], summary="Submit the support form")
async def create_ticket(form: SupportRequestCreate, services: ServicesDep) -> TicketCreated:
    event = web_event(new_ticket_id(), form, fold_gmail=services.settings.EMAIL_FOLD_GMAIL_DOTS)
    await services.limits.check_identity(f"email:{event.sender[0].value}")
    # One transaction around the insert and the wait for Kafka's ack: a refused event rolls
    # the ticket back, so there is never a ticket without its event.
    async with services.db.connection() as conn, conn.transaction():
        await conn.execute(_INSERT_TICKET, (
            event.ticket_id, form.subject, form.category, event.inbound_key,
            form.email, form.phone, form.name))
        await produce(services, event)
    log.info("support.ticket_created", ticket_id=event.ticket_id, category=form.category)
    return TicketCreated(ticket_id=event.ticket_id)


# Only tickets the web form created (random ids); tickets of other channels have ids derived
# from their first message and never reach the public surface.
_WEB_TICKET = """
SELECT id, status, subject, category, created_at, updated_at, first_response_at,
       contact_email, contact_phone, contact_name, contact_email_verified
FROM tickets WHERE id = %s AND channel = 'web'
"""
# Kinds of the ticket's contact details confirmed by a code or link (sinks/verification.py).
_CONFIRMED_KINDS = """
SELECT DISTINCT kind FROM identifier_verifications WHERE ticket_id = %s AND confirmed_at IS NOT NULL
"""
# The ticket's own web messages: mail or WhatsApp messages that the flow filed on the same
# ticket (a linked customer's other channels) are not the page's to show.
_TICKET_MESSAGES = """
SELECT direction, author, channel, body, occurred_at FROM messages
WHERE ticket_id = %s AND channel = 'web' ORDER BY occurred_at, id LIMIT 200
"""
PUBLIC_TICKET_FIELDS = ("status", "subject", "category", "created_at", "updated_at",
                        "first_response_at")


@router.get("/ticket/{ticket_id}", response_model=TicketPublic, dependencies=[RateLimitedByIp],
            summary="A ticket's status and messages")
async def read_ticket(services: ServicesDep,
                      ticket_id: str = Path(pattern=TICKET_ID)) -> TicketPublic:
    async with services.db.connection() as conn:
        ticket = await (await conn.execute(_WEB_TICKET, (ticket_id,))).fetchone()
        if ticket is None:
            raise HTTPException(404, "ticket not found")
        messages = await (await conn.execute(_TICKET_MESSAGES, (ticket_id,))).fetchall()
        rows = await (await conn.execute(_CONFIRMED_KINDS, (ticket_id,))).fetchall()
    return TicketPublic(ticket_id=ticket["id"], messages=messages,
                        contacts=public_contacts(ticket, {r["kind"] for r in rows}),
                        **{k: ticket[k] for k in PUBLIC_TICKET_FIELDS})


def public_contacts(ticket: dict, confirmed_kinds: set[str]) -> list[TicketContact]:
    """What the page may offer to confirm: each contact detail the ticket has, masked."""
    contacts = []
    if ticket["contact_email"]:
        verified = bool(ticket["contact_email_verified"]) or "email" in confirmed_kinds
        contacts.append(TicketContact(kind="email", masked=mask("email", ticket["contact_email"]),
                                      verified=verified))
    if ticket["contact_phone"]:
        contacts.append(TicketContact(kind="phone", masked=mask("phone", ticket["contact_phone"]),
                                      verified="phone" in confirmed_kinds))
    return contacts


def reply_event(ticket: dict, reply: TicketReplyCreate, *, fold_gmail: bool) -> InboundMessage:
    """The customer's reply on their ticket: a web message on the same ticket, from the
    ticket's own contact details (nothing in the request can name another sender)."""
    return InboundMessage(
        channel=Channel.WEB,
        channel_message_id=f"{ticket['id']}.{reply.reply_id}",
        ticket_id=ticket["id"],
        thread_id=ticket["id"],
        sender=_sender(ticket["contact_email"], ticket["contact_phone"], fold_gmail=fold_gmail),
        sender_name=ticket["contact_name"],
        body=reply.message,
        received_at=datetime.now(UTC),
        metadata={"category": ticket["category"], "name": ticket["contact_name"],
                  "ticket_reply": True},
    )


@router.post("/ticket/{ticket_id}/reply", status_code=202, response_model=TicketReplyAccepted,
             dependencies=[RateLimitedByIp], summary="Reply on a ticket (the ticket id authorises)")
async def create_ticket_reply(reply: TicketReplyCreate, services: ServicesDep,
                              ticket_id: str = Path(pattern=TICKET_ID)) -> TicketReplyAccepted:
    async with services.db.connection() as conn:
        ticket = await (await conn.execute(_WEB_TICKET, (ticket_id,))).fetchone()
    if ticket is None or not ticket["contact_email"]:
        raise HTTPException(404, "ticket not found")
    if ticket["status"] == "closed":
        raise HTTPException(409, "ticket is closed: please send a new request")
    event = reply_event(ticket, reply, fold_gmail=services.settings.EMAIL_FOLD_GMAIL_DOTS)
    await services.limits.check_identity(f"email:{event.sender[0].value}")
    # The same durable path as every inbound message: a receipt row and Kafka's ack in one
    # transaction; the page's reply_id makes a double click or a retry one message.
    published = await publish_once(services, event)
    log.info("support.ticket_reply", ticket_id=ticket_id, duplicate=not published)
    return TicketReplyAccepted(ticket_id=ticket_id, reply_id=reply.reply_id)
