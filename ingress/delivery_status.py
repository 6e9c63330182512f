"""Twilio delivery status per outbox part, and what a failed delivery means.

Statuses only move forward (callbacks can arrive out of order). `delivered`/`read`
of an agent or human reply make it the ticket's first response (the dispatcher leaves that
to the callback when callbacks are on); `failed`/`undelivered` (e.g. 63016, outside the
24-hour session window) escalate to a person with the provider's reason instead.
"""

from __future__ import annotations


from fte.logs import get_logger
from schema.queries import channels as q

log = get_logger(__name__)

RANK = {"accepted": 0, "scheduled": 0, "queued": 1, "sending": 2, "sent": 3, "delivered": 4,
        "read": 5, "failed": 9, "undelivered": 9, "canceled": 9}
DELIVERED = {"delivered", "read"}  # "sent" reached WhatsApp, not the customer
FAILED = {"failed", "undelivered"}


def failure_reason(status: str, error_code: str | None, error_message: str | None) -> str:
    known = {"63016": "outside the WhatsApp 24-hour session window (a template is required)",
             "63003": "the number is not on WhatsApp", "63024": "the recipient is invalid"}
    why = known.get(error_code or "") or error_message or "no reason given"
    return f"WhatsApp reply {status} (error {error_code or 'none'}): {why}"


async def record_status(services, *, sid: str, status: str, error_code: str | None,
                        error_message: str | None) -> None:
    if status not in RANK:
        raise ValueError(f"MessageStatus: unknown status {status!r}")
    async with services.db.connection() as conn, conn.transaction():
        outbox = await (await conn.execute(q.OUTBOX_BY_PROVIDER_ID, {"sid": sid})).fetchone()
        changed = await (await conn.execute(q.UPSERT_DELIVERY, {
            "sid": sid, "outbox_id": outbox["id"] if outbox else None,
            "part": outbox["part"] if outbox else None, "channel": "whatsapp", "status": status,
            "error_code": error_code, "error_message": (error_message or "")[:500] or None,
            "rank": RANK[status]})).fetchone()
        if changed is None or outbox is None:
            return  # stale (an earlier status after a later one) or not one of ours
        counts = outbox["kind"] in ("agent", "human") and outbox["ticket_id"]
        if status in DELIVERED and counts:
            await conn.execute(q.FIRST_RESPONSE, {"ticket_id": outbox["ticket_id"]})
        if status in FAILED:
            reason = failure_reason(status, error_code, error_message)
            escalation = await (await conn.execute(q.ESCALATE_DELIVERY_FAILURE, {
                "customer_id": outbox["customer_id"], "conversation_id": outbox["conversation_id"],
                "ticket_id": outbox["ticket_id"], "inbound_key": f"delivery:{sid}",
                "channel": "whatsapp", "detail": reason})).fetchone()
            if outbox["ticket_id"]:
                # Never reached the customer: no first response (callbacks set that), a person.
                await conn.execute(q.TICKET_ESCALATED, {"ticket_id": outbox["ticket_id"]})
            log.warning("whatsapp.delivery_failed", outbox_id=outbox["id"], error_code=error_code,
                        escalation_id=escalation["id"] if escalation else None)
