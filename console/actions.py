"""What a support lead can change from the console. Each action records who did it.

Escalation actions guard their preconditions in SQL (see schema/queries/console.py), so a
stale page or a double click changes nothing twice. A human reply takes the same path as
the agent's: a `Reply` in the outbox (the dispatcher delivers it, with retries and the
channel's circuit breaker) and, in the same transaction, a `replied` event (reply kind
`human`) in the event outbox, which `fte relay` publishes to support.events.
"""

from __future__ import annotations

import importlib
import json
import re
import uuid
from dataclasses import dataclass
from typing import Any

from datetime import UTC, datetime

from psycopg.types.json import Jsonb

from console import data
from fte.kafka import produce_sync
from fte.logs import get_logger
from schema.events import Channel, Reply, ReplyKind, SupportEvent, SupportEventKind
from schema.queries import console as q
from schema.queries.events import OutboxEvent, insert_event_batch

log = get_logger(__name__)

MAX_REPLY_CHARS = 5_000


def missing_modules(*names: str) -> list[str]:
    """Which of the modules an action needs cannot be imported (shown instead of a crash)."""
    missing = []
    for name in names:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    return missing


REPLY_MODULES = ("flows.formatting", "sinks.outbox")
KB_MODULES = ("flows.knowledge",)


def audit(conn, actor: str, action: str, target: str, detail: dict[str, Any] | None = None) -> None:
    conn.execute(q.AUDIT, {"actor": actor, "action": action, "target": target,
                           "detail": Jsonb(detail or {})})


# --- escalations -------------------------------------------------------------------------
def assign(escalation_id: int, user: str) -> bool:
    with data.connection() as conn, conn.transaction():
        done = conn.execute(q.ASSIGN_ESCALATION, {"id": escalation_id, "user": user}).fetchone()
        if done:
            audit(conn, user, "assign", f"escalation:{escalation_id}")
    data.invalidate()
    return done is not None


def resolve(escalation_id: int, user: str, note: str = "") -> bool:
    """Resolved: the customer's next message is answered by the agent again."""
    with data.connection() as conn, conn.transaction():
        done = conn.execute(q.RESOLVE_ESCALATION,
                            {"id": escalation_id, "user": user, "note": note.strip() or None}).fetchone()
        if done:
            if done["ticket_id"]:
                conn.execute(q.RESOLVE_TICKET, {"id": done["ticket_id"]})
            audit(conn, user, "resolve", f"escalation:{escalation_id}", {"note": note.strip()})
    data.invalidate()
    return done is not None


@dataclass(frozen=True)
class ReplyTarget:
    channel: Channel
    recipient: str
    subject: str | None
    metadata: dict[str, Any]
    thread_id: str | None
    ticket_id: str | None
    conversation_id: int | None


def reply_target(conn, esc: dict[str, Any]) -> ReplyTarget:
    """The escalation's own channel and the address its message came from — never "the
    channel last used" by a customer record that may have absorbed others since (merges)."""
    channel_name, _, cmid = str(esc["inbound_key"]).partition(":")
    src = conn.execute(q.ESCALATION_INBOUND, {"channel": channel_name,
                                              "channel_message_id": cmid}).fetchone()
    channel = Channel(esc["channel"])
    metadata = dict(src["metadata"] or {}) if src else {}
    # The address the customer wrote from (the flow keeps it as metadata.sender).
    wanted = "phone" if channel is Channel.WHATSAPP else "email"
    used = [v for v in metadata.get("sender") or [] if ("@" in v) == (wanted == "email")]
    if not used:
        raise ValueError(f"escalation {esc['id']}: its message has no {wanted} to reply to")
    # Same form as the flow's replies (flows.support_steps.recipient_for).
    recipient = f"whatsapp:{used[0]}" if channel is Channel.WHATSAPP else used[0]
    ticket_id = esc.get("ticket_id") or (src["ticket_id"] if src else None)
    thread_id = metadata.get("thread_id")
    if not thread_id:  # the Gmail thread our earlier reply to that message went to
        earlier = conn.execute(q.THREAD_OF_REPLY_TO, {"inbound_key": esc["inbound_key"]}).fetchone()
        thread_id = earlier["thread_id"] if earlier else None
    if channel is Channel.WEB:
        thread_id = thread_id or ticket_id
    return ReplyTarget(
        channel=channel,
        recipient=recipient,
        subject=src["subject"] if src else None,
        metadata=metadata,
        thread_id=thread_id,
        ticket_id=ticket_id,
        conversation_id=esc.get("conversation_id") or (src["conversation_id"] if src else None),
    )


@dataclass(frozen=True)
class HumanReplyResult:
    reply: Reply
    duplicate: bool = False  # this compose was queued before (a double click): nothing new


def build_human_reply(esc: dict[str, Any], target: ReplyTarget, text: str, reply_id: str) -> Reply:
    from flows.formatting import format_reply  # the support flow's formatter: same channel style

    formatted = format_reply(
        target.channel.value,
        text,
        customer_name=esc.get("customer") or None,
        inbound_subject=target.subject,
        inbound_metadata=target.metadata,
        previous_contact=None,
        kind=ReplyKind.HUMAN,
    )
    return Reply(
        inbound_key=f"human:{reply_id}",
        kind=ReplyKind.HUMAN,
        channel=target.channel,
        customer_id=int(esc["customer_id"]),
        conversation_id=target.conversation_id,
        ticket_id=target.ticket_id,
        recipient=target.recipient,
        subject=formatted.subject,
        body=formatted.body,
        parts=list(formatted.parts),
        html=formatted.html,
        headers=dict(formatted.headers),
        thread_id=target.thread_id,
    )


REPLY_ID = re.compile(r"^[0-9a-f]{32}$")


def reply_as_human(escalation_id: int, user: str, text: str,
                   reply_id: str | None = None) -> HumanReplyResult:
    """Queue the reply in the outbox and its `replied` event in the event outbox, in one
    transaction (the customer gets it and the metrics count it even if Kafka is down).
    `reply_id` is the compose's idempotency key: the outbox row is unique per key, so a
    second click with the same key queues nothing."""
    text = text.strip()
    if not text:
        raise ValueError("the reply is empty")
    if len(text) > MAX_REPLY_CHARS:
        raise ValueError(f"the reply is longer than {MAX_REPLY_CHARS} characters")
    reply_id = reply_id or uuid.uuid4().hex
    if not REPLY_ID.match(reply_id):
        raise ValueError("reply_id: 32 hex characters")
    from sinks.outbox import enqueue_replies

    with data.connection() as conn, conn.transaction():
        esc = conn.execute(q.ESCALATION, {"id": escalation_id}).fetchone()
        if esc is None:
            raise ValueError(f"escalation {escalation_id} does not exist")
        target = reply_target(conn, esc)
        reply = build_human_reply(esc, target, text, reply_id)
        # Serialise concurrent clicks on the same key; the unique outbox key does the rest.
        conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (reply.inbound_key,))
        if conn.execute(q.OUTBOX_ROW, {"inbound_key": reply.inbound_key}).fetchone():
            return HumanReplyResult(reply, duplicate=True)
        enqueue_replies(conn, [reply], escalation_id=escalation_id)
        insert_event_batch(conn, reply.inbound_key, [human_replied_event(esc, reply)])
        audit(conn, user, "human_reply", f"escalation:{escalation_id}",
              {"reply": reply.inbound_key, "channel": reply.channel.value})
    data.invalidate()
    return HumanReplyResult(reply)


def human_replied_event(esc: dict[str, Any], reply: Reply) -> OutboxEvent:
    event = SupportEvent(kind=SupportEventKind.REPLIED, channel=reply.channel,
                         inbound_key=reply.inbound_key, customer_id=reply.customer_id,
                         ticket_id=reply.ticket_id, priority=esc.get("priority") or "normal",
                         occurred_at=datetime.now(UTC), reason=esc.get("reason"),
                         reply_kind=ReplyKind.HUMAN.value)
    return OutboxEvent("support.events", str(reply.customer_id), event.model_dump_json())


# --- dead letters ------------------------------------------------------------------------
def replay_dead_letter(dead_letter_id: int, user: str) -> str:
    """Produce the raw bytes back to their source topic, once: 'replayed', 'already' or 'missing'."""
    s = data.settings()
    with data.connection() as conn, conn.transaction():
        dl = conn.execute(q.DEAD_LETTER_FOR_REPLAY, {"id": dead_letter_id}).fetchone()
        if dl is None:
            return "missing"
        if dl["replayed_at"] is not None:
            return "already"
        key = bytes(dl["msg_key"]) if dl["msg_key"] is not None else None
        partition, offset = produce_sync(data.producer(s.kafka_bootstrap), dl["source_topic"],
                                         bytes(dl["raw"]), key=key)
        conn.execute(q.MARK_REPLAYED, {"id": dead_letter_id, "user": user})
        audit(conn, user, "replay", f"dead_letter:{dead_letter_id}",
              {"topic": dl["source_topic"], "partition": partition, "offset": offset})
    data.invalidate()
    return "replayed"


def describe_raw(raw: bytes) -> tuple[str, str]:
    """(language, text) for showing a dead letter: pretty JSON, text, or a hex dump."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return "text", raw[:4096].hex(" ", 16)
    try:
        return "json", json.dumps(json.loads(text), indent=2, ensure_ascii=False)
    except ValueError:
        return "text", text


# --- knowledge base ----------------------------------------------------------------------
SLUG = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
MAX_ARTICLE_CHARS = 50_000


def kb_save(user: str, *, slug: str, title: str, body: str, intents: list[str], tags: list[str],
            replaces: str | None = None) -> str:
    """Create or update an article (chunked and re-embedded by the knowledge module)."""
    slug, title, body = slug.strip(), title.strip(), body.strip()
    if not SLUG.match(slug):
        raise ValueError("slug: use lower-case letters, digits and dashes, e.g. returns-policy")
    if len(title) < 3:
        raise ValueError("title: at least 3 characters")
    if len(body) < 20:
        raise ValueError("body: at least 20 characters")
    if len(body) > MAX_ARTICLE_CHARS:
        raise ValueError(f"body: at most {MAX_ARTICLE_CHARS} characters")
    from flows import knowledge

    s = data.settings()
    with data.connection() as conn, conn.transaction():
        knowledge.save_article(conn, settings=s, slug=slug, title=title, body=body,
                               intents=intents, tags=tags, source=f"console:{user}")
        if replaces and replaces != slug:
            knowledge.delete_article(conn, replaces)
        audit(conn, user, "kb_save", f"kb:{slug}", {"replaces": replaces, "chars": len(body)})
    data.invalidate()
    return slug


def kb_delete(user: str, slug: str) -> int:
    from flows import knowledge

    with data.connection() as conn, conn.transaction():
        removed = knowledge.delete_article(conn, slug)
        audit(conn, user, "kb_delete", f"kb:{slug}", {"chunks": removed})
    data.invalidate()
    return int(removed or 0)
