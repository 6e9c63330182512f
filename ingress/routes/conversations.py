"""GET /conversations/{id}: one conversation across channels, in order (operators only)."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Query

from ingress.deps import RateLimitedByIp, ServicesDep
from ingress.models import ConversationPublic
from ingress.operator_auth import Agent

# Operators only (role agent): customer data never reaches the public surface.
router = APIRouter(prefix="/conversations", tags=["conversations"], dependencies=[Agent])


@router.get("/{conversation_id}", response_model=ConversationPublic,
            dependencies=[RateLimitedByIp], summary="A conversation and its messages")
async def read_conversation(conversation_id: int, services: ServicesDep,
                            limit: int = Query(200, ge=1, le=1000)) -> ConversationPublic:
    async with services.db.connection() as conn:
        conversation = await (await conn.execute(
            """SELECT id, customer_id, status, first_channel, last_channel, opened_at,
                      last_message_at FROM conversations WHERE id = %s""",
            (conversation_id,))).fetchone()
        if conversation is None:
            raise HTTPException(404, "conversation not found")
        messages = await (await conn.execute(
            """SELECT id, channel, direction, author, subject, body, ticket_id, occurred_at
               FROM messages WHERE conversation_id = %s ORDER BY occurred_at, id LIMIT %s""",
            (conversation_id, limit))).fetchall()
    return ConversationPublic(**conversation, messages=messages, count=len(messages))
