"""The web support form: submit a request, check a ticket's status."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from fastapi import APIRouter, HTTPException, Path

from fte.logs import get_logger
from ingress.deps import RateLimitedByIp, ServicesDep
from ingress.inbound import produce
from ingress.models import SupportRequestCreate, TicketCreated, TicketPublic
from schema.events import Channel, Identifier, IdentifierKind, InboundMessage
from schema.identity import normalize_email

log = get_logger(__name__)
router = APIRouter(prefix="/support", tags=["support"])

TICKET_ID = r"^T-[0-9A-Za-z-]{8,60}$"

_INSERT_TICKET = """
INSERT INTO tickets (id, channel, subject, category, status, source_inbound_key,
                     contact_email, contact_phone, contact_name)
VALUES (%s, 'web', %s, %s, 'open', %s, %s, %s, %s)
"""


def new_ticket_id() -> str:
    """Unguessable (80 random bits): the id is what lets a customer read the ticket."""
    return f"T-{uuid.uuid4().hex[:20].upper()}"


def web_event(ticket_id: str, form: SupportRequestCreate, *, fold_gmail: bool) -> InboundMessage:
    sender = [Identifier(kind=IdentifierKind.EMAIL, value=normalize_email(form.email, fold_gmail=fold_gmail))]
    if form.phone:
        sender.append(Identifier(kind=IdentifierKind.PHONE, value=form.phone))
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


@router.get("/ticket/{ticket_id}", response_model=TicketPublic, dependencies=[RateLimitedByIp],
            summary="A ticket's status and messages")
async def read_ticket(services: ServicesDep,
                      ticket_id: str = Path(pattern=TICKET_ID)) -> TicketPublic:
    async with services.db.connection() as conn:
        ticket = await (await conn.execute(
            """SELECT id, status, subject, category, created_at, updated_at, first_response_at
               FROM tickets WHERE id = %s""", (ticket_id,))).fetchone()
        if ticket is None:
            raise HTTPException(404, "ticket not found")
        messages = await (await conn.execute(
            """SELECT direction, author, channel, body, occurred_at FROM messages
               WHERE ticket_id = %s ORDER BY occurred_at, id LIMIT 200""", (ticket_id,))).fetchall()
    return TicketPublic(ticket_id=ticket["id"], messages=messages,
                        **{k: v for k, v in ticket.items() if k != "id"})
