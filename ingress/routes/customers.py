"""GET /customers/lookup: a customer by email or phone (operators only)."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Query

from ingress.deps import RateLimitedByIp, ServicesDep
from ingress.models import CustomerPublic
from ingress.operator_auth import Agent
from schema.identity import InvalidIdentifier, normalize_email, normalize_phone

# Operators only (role agent): customer data never reaches the public surface.
router = APIRouter(prefix="/customers", tags=["customers"], dependencies=[Agent])

# Follows merges to the surviving customer.
_FIND = """
WITH RECURSIVE chain AS (
    SELECT c.id, c.merged_into, 0 AS depth FROM customers c
    JOIN customer_identifiers ci ON ci.customer_id = c.id
    WHERE ci.kind = %s AND ci.value = %s
  UNION ALL
    SELECT c.id, c.merged_into, chain.depth + 1 FROM customers c
    JOIN chain ON c.id = chain.merged_into WHERE chain.depth < 10
)
SELECT cu.id, cu.display_name, cu.created_at FROM chain
JOIN customers cu ON cu.id = chain.id
WHERE chain.merged_into IS NULL LIMIT 1
"""


@router.get("/lookup", response_model=CustomerPublic, dependencies=[RateLimitedByIp],
            summary="Find a customer by email or phone")
async def read_customer(services: ServicesDep, email: str | None = Query(None, max_length=320),
                        phone: str | None = Query(None, max_length=32)) -> CustomerPublic:
    if bool(email) == bool(phone):
        raise HTTPException(422, "email or phone: give exactly one")
    try:
        key = (("email", normalize_email(email, fold_gmail=services.settings.EMAIL_FOLD_GMAIL_DOTS))
               if email else
               ("phone", normalize_phone(phone, default_region=services.settings.DEFAULT_PHONE_REGION)))
    except InvalidIdentifier as exc:
        raise HTTPException(422, f"{'email' if email else 'phone'}: {exc}") from exc
    async with services.db.connection() as conn:
        customer = await (await conn.execute(_FIND, key)).fetchone()
        if customer is None:
            raise HTTPException(404, "customer not found")
        identifiers = await (await conn.execute(
            """SELECT kind, value, first_channel FROM customer_identifiers
               WHERE customer_id = %s ORDER BY created_at""", (customer["id"],))).fetchall()
        conversations = await (await conn.execute(
            """SELECT id, status, first_channel, last_channel, opened_at, last_message_at
               FROM conversations WHERE customer_id = %s ORDER BY last_message_at DESC LIMIT 20""",
            (customer["id"],))).fetchall()
        open_tickets = (await (await conn.execute(
            "SELECT count(*) AS n FROM tickets WHERE customer_id = %s AND status IN ('open', 'escalated')",
            (customer["id"],))).fetchone())["n"]
    return CustomerPublic(**customer, identifiers=identifiers, conversations=conversations,
                          open_tickets=open_tickets)
