"""The support flow's batch handler: Postgres in and out, agent calls in a thread pool.

One call per Bytewax batch (flat_map_batch), all on the worker that owns these customers:
1. prepare (one transaction): skip messages already handled (a replay after recovery),
   open/reopen the customer's conversation, record channel switches, upsert tickets,
   insert the inbound messages, read active escalations and the last 20 messages;
2. decide per message, in rounds so each customer's messages go in order: human
   takeover (attach, one holding acknowledgement), the escalation policy, then the agent
   (one `respond_many` per chunk, chunks in parallel threads);
3. write (one transaction): escalations, outbox rows + outbound messages, kb lookups,
   ticket status, `handled_as` on the inbound rows, flow_progress.
Returns the SupportEvents and Escalations to publish. Every write is idempotent
(ON CONFLICT on message / inbound keys), so a re-emitted batch changes nothing.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from flows.agent import AgentRequest, AgentResult, HistoryItem, PreviousContact
from flows.formatting import format_reply
from flows.policy import decide
from flows.support_steps import (
    HOLDING_TEXT,
    Outcome,
    Work,
    customer_rounds,
    escalation_ack_text,
    recipient_for,
    support_event,
    trailing_clarifications,
    web_or_new_ticket_id,
)
from fte.logs import get_logger
from schema.events import (
    DeadLetter,
    Escalation,
    EscalationReason,
    Reply,
    ReplyKind,
    SupportEventKind,
    describe_error,
)
from sinks.identity import survivors
from sinks.outbox import enqueue_replies

log = get_logger(__name__)
HISTORY = 20
AGENT_CHUNK = 16

HISTORY_SQL = """
SELECT * FROM (
  SELECT m.customer_id, m.conversation_id, m.channel, m.channel_message_id, m.direction, m.author,
         m.subject, m.body,
         m.occurred_at, m.metadata->>'kind' AS kind,
         row_number() OVER (PARTITION BY m.customer_id ORDER BY m.occurred_at DESC, m.id DESC) AS rn
  FROM messages m WHERE m.customer_id = ANY(%s)
) h WHERE rn <= %s ORDER BY customer_id, occurred_at, rn DESC
"""

INSERT_INBOUND = """
INSERT INTO messages (channel, channel_message_id, direction, author, customer_id, conversation_id,
                      ticket_id, subject, body, sentiment, metadata, occurred_at)
VALUES (%(channel)s, %(cmid)s, 'inbound', 'customer', %(customer_id)s, %(conversation_id)s,
        %(ticket_id)s, %(subject)s, %(body)s, %(sentiment)s, %(metadata)s, %(occurred_at)s)
ON CONFLICT (channel, channel_message_id) DO UPDATE
    SET customer_id = EXCLUDED.customer_id, conversation_id = EXCLUDED.conversation_id,
        ticket_id = EXCLUDED.ticket_id, sentiment = EXCLUDED.sentiment
    WHERE messages.handled_at IS NULL
"""

UPSERT_PROGRESS = """
INSERT INTO flow_progress (flow, topic, partition, next_offset)
VALUES (%s, %s, %s, %s)
ON CONFLICT (flow, topic, partition) DO UPDATE
    SET next_offset = GREATEST(flow_progress.next_offset, EXCLUDED.next_offset), updated_at = now()
"""


class SupportHandler:
    """Callable for `op.flat_map_batch`; one instance per flow, shared by its workers."""

    def __init__(self, database_url: str, agent, policy, *, reopen_hours: float = 24.0,
                 concurrency: int = 8, sla_config=None, flow_name: str = "support"):
        self.database_url = database_url
        self.agent = agent
        self.policy = policy
        self.reopen = timedelta(hours=reopen_hours)
        self.pool = ThreadPoolExecutor(max_workers=max(1, concurrency), thread_name_prefix="agent")
        self.sla_config = sla_config
        self.flow_name = flow_name
        self._local = threading.local()

    # --- connection per worker thread ---------------------------------------------------------
    def _conn(self) -> psycopg.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None or conn.closed:
            conn = psycopg.connect(self.database_url, row_factory=dict_row, connect_timeout=10)
            self._local.conn = conn
        return conn

    def __call__(self, batch: list[Work]) -> list[Any]:
        if not batch:
            return []
        try:
            return self._with_retries(batch)
        except psycopg.OperationalError:
            raise  # the database is unreachable: stop, resume from the snapshot later
        except Exception as exc:  # noqa: BLE001 -- isolate the message that fails, keep the rest
            if len(batch) > 1:
                log.warning("support.batch_split", error=str(exc), messages=len(batch))
                return [out for w in batch for out in self([w])]
            w = batch[0]
            log.error("support.dead_letter", inbound_key=w.inbound.msg.inbound_key, error=str(exc))
            return [DeadLetter.for_raw(source_topic=w.inbound.topic, partition=w.inbound.partition,
                                       offset=w.inbound.offset, key=w.inbound.key.encode(),
                                       raw=w.inbound.msg.to_bytes(),
                                       reason=f"handler: {describe_error(exc)}"[:2000])]

    def _with_retries(self, batch: list[Work]) -> list[Any]:
        for attempt in range(3):
            try:
                return self.handle(batch)
            except (psycopg.errors.UniqueViolation, psycopg.errors.DeadlockDetected,
                    psycopg.errors.SerializationFailure) as exc:
                # A concurrent batch (another worker holding a just-merged customer) got there
                # first; both transactions rolled back cleanly, so re-read and try again.
                if attempt == 2:
                    raise
                log.warning("support.batch_retry", error=str(exc), messages=len(batch))
            except psycopg.OperationalError:
                conn = getattr(self._local, "conn", None)
                if conn is not None:
                    conn.close()
                raise
        return []

    # --- the batch ----------------------------------------------------------------------------
    def handle(self, batch: list[Work]) -> list[Any]:
        started = time.monotonic()
        conn = self._conn()
        with conn.transaction():
            ctx = self._prepare(conn, batch)
        prepared = time.monotonic()
        outcomes = self._decide(ctx)
        decided = time.monotonic()
        with conn.transaction():
            out = self._write(conn, ctx, outcomes)
            self._progress(conn, batch)
        log.debug("support.batch", messages=len(batch), prepare_ms=round((prepared - started) * 1000),
                  decide_ms=round((decided - prepared) * 1000),
                  write_ms=round((time.monotonic() - decided) * 1000))
        return out

    def _prepare(self, conn: psycopg.Connection, batch: list[Work]) -> dict:
        ids = survivors(conn, sorted({w.customer_id for w in batch}))
        batch = [Work(w.inbound, ids[w.customer_id], w.sentiment, w.trend) for w in batch]
        keys = [(w.inbound.msg.channel.value, w.inbound.msg.channel_message_id) for w in batch]
        done = {(r["channel"], r["channel_message_id"]) for r in conn.execute(
            "SELECT channel, channel_message_id FROM messages m JOIN unnest(%s::text[], %s::text[]) "
            "AS k(channel, channel_message_id) USING (channel, channel_message_id) "
            "WHERE m.handled_at IS NOT NULL",
            ([k[0] for k in keys], [k[1] for k in keys])).fetchall()}
        todo = [w for w, k in zip(batch, keys) if k not in done]
        if len(todo) < len(batch):
            log.info("support.replay_skipped", messages=len(batch) - len(todo))
        customers = sorted({w.customer_id for w in todo})
        names = {r["id"]: r["display_name"] for r in conn.execute(
            "SELECT id, display_name FROM customers WHERE id = ANY(%s)", (customers,)).fetchall()}
        convs = {r["customer_id"]: r for r in conn.execute(
            "SELECT DISTINCT ON (customer_id) * FROM conversations WHERE customer_id = ANY(%s) "
            "ORDER BY customer_id, (status = 'open') DESC, last_message_at DESC",
            (customers,)).fetchall()}
        tickets = {r["conversation_id"]: r for r in conn.execute(
            "SELECT DISTINCT ON (conversation_id) * FROM tickets WHERE conversation_id = ANY(%s) "
            "AND status NOT IN ('resolved', 'closed') ORDER BY conversation_id, created_at DESC",
            ([c["id"] for c in convs.values()],)).fetchall()}
        items, opened = [], []
        switches: list[tuple] = []
        touched: dict[int, dict] = {}  # conversation id -> its state after this batch
        for w in todo:
            msg = w.inbound.msg
            conv = convs.get(w.customer_id)
            at = msg.received_at
            # A conversation idle longer than the reopen window is over (open or not): the
            # message starts a new one (and a new ticket); within it, a closed one reopens.
            if conv is None or at - conv["last_message_at"] > self.reopen:
                if conv is not None and conv["status"] == "open":
                    conn.execute("UPDATE conversations SET status='closed', closed_at=now() WHERE id=%s",
                                 (conv["id"],))
                conv = conn.execute(
                    "INSERT INTO conversations (customer_id, first_channel, last_channel, opened_at, "
                    "last_message_at) VALUES (%s, %s, %s, %s, %s) RETURNING *",
                    (w.customer_id, msg.channel.value, msg.channel.value, at, at)).fetchone()
            else:
                if conv["status"] != "open":
                    conv = conn.execute("UPDATE conversations SET status='open', closed_at=NULL "
                                        "WHERE id=%s RETURNING *", (conv["id"],)).fetchone()
                if conv["last_channel"] != msg.channel.value:
                    switches.append((conv["id"], conv["last_channel"], msg.channel.value,
                                     msg.inbound_key, at))
                # Kept in memory and written once per conversation after the loop.
                conv = {**conv, "last_channel": msg.channel.value,
                        "last_message_at": max(conv["last_message_at"], at)}
                touched[conv["id"]] = conv
            convs[w.customer_id] = conv
            ticket = self._ticket(conn, w, conv, tickets, opened)
            items.append({"work": w, "conv": conv, "ticket": ticket})
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO channel_switches (conversation_id, from_channel, to_channel, "
                            "inbound_key, switched_at) VALUES (%s, %s, %s, %s, %s) "
                            "ON CONFLICT (inbound_key) DO NOTHING", switches)
            cur.executemany("UPDATE conversations SET last_channel = %s, "
                            "last_message_at = GREATEST(last_message_at, %s) WHERE id = %s",
                            [(c["last_channel"], c["last_message_at"], cid) for cid, c in touched.items()])
        conn.cursor().executemany(INSERT_INBOUND, [{
            "channel": i["work"].inbound.msg.channel.value,
            "cmid": i["work"].inbound.msg.channel_message_id,
            "customer_id": i["work"].customer_id, "conversation_id": i["conv"]["id"],
            "ticket_id": i["ticket"]["id"], "subject": i["work"].inbound.msg.subject,
            "body": i["work"].inbound.msg.body, "sentiment": i["work"].sentiment,
            "metadata": Jsonb({**i["work"].inbound.msg.metadata,
                               "sender": [x.value for x in i["work"].inbound.identifiers]}),
            "occurred_at": i["work"].inbound.msg.received_at} for i in items])
        active = {r["customer_id"]: r for r in conn.execute(
            "SELECT * FROM escalations WHERE customer_id = ANY(%s) AND status IN ('open','assigned')",
            (customers,)).fetchall()}
        history: dict[int, list[dict]] = {c: [] for c in customers}
        for r in conn.execute(HISTORY_SQL, (customers, HISTORY + len(todo))).fetchall():
            history[r["customer_id"]].append(r)
        return {"items": items, "active": active, "history": history, "names": names,
                "opened": opened, "batch": batch}

    def _ticket(self, conn, w: Work, conv: dict, tickets: dict, opened: list) -> dict:
        msg = w.inbound.msg
        if msg.channel.value == "web" and msg.ticket_id:
            meta = msg.metadata or {}
            row = conn.execute(
                "INSERT INTO tickets (id, customer_id, conversation_id, channel, subject, category, "
                "contact_email, contact_name, source_inbound_key, created_at) "
                "VALUES (%s, %s, %s, 'web', %s, %s, %s, %s, %s, %s) "
                "ON CONFLICT (id) DO UPDATE SET customer_id = EXCLUDED.customer_id, "
                "conversation_id = EXCLUDED.conversation_id, updated_at = now() "
                "RETURNING *, (xmax = 0) AS inserted",
                (msg.ticket_id, w.customer_id, conv["id"], msg.subject,
                 str(meta.get("category") or "general"),
                 next((i.value for i in w.inbound.identifiers if i.kind.value == "email"), None),
                 meta.get("name") or msg.sender_name, msg.inbound_key, msg.received_at)).fetchone()
            if not meta.get("ticket_reply"):  # a reply on the ticket page opens nothing
                opened.append((w, row))  # a web ticket is opened when the flow first takes it
            tickets[conv["id"]] = row
            return row
        current = tickets.get(conv["id"])
        if current is not None:
            return current
        row = conn.execute(
            "INSERT INTO tickets (id, customer_id, conversation_id, channel, subject, "
            "source_inbound_key, created_at) VALUES (%s, %s, %s, %s, %s, %s, %s) "
            "ON CONFLICT (id) DO UPDATE SET updated_at = now() RETURNING *",
            (web_or_new_ticket_id(msg), w.customer_id, conv["id"], msg.channel.value,
             (msg.subject or msg.body[:80]), msg.inbound_key, msg.received_at)).fetchone()
        tickets[conv["id"]] = row
        opened.append((w, row))
        return row

    # --- decisions ----------------------------------------------------------------------------
    def _decide(self, ctx: dict) -> list[Outcome]:
        items = ctx["items"]
        active = dict(ctx["active"])  # customer -> escalation row (or a planned one)
        holding_sent = {c: e["holding_ack_sent"] for c, e in active.items()}
        outcomes: dict[str, Outcome] = {}
        for rnd in customer_rounds(items, lambda i: i["work"].customer_id):
            ask = []
            for item in rnd:
                w = item["work"]
                msg = w.inbound.msg
                hist = self._history_before(ctx["history"][w.customer_id], msg)
                item["hist"] = hist
                if w.customer_id in active:
                    o = Outcome(w, "attached")
                    if not holding_sent.get(w.customer_id):
                        o.reply_kind, o.reply_text, o.holding = ReplyKind.HOLDING, HOLDING_TEXT, True
                        holding_sent[w.customer_id] = True
                    outcomes[msg.inbound_key] = o
                    continue
                d = decide(msg.body if not msg.subject else f"{msg.subject}\n{msg.body}",
                           sentiment=w.sentiment, trend=w.trend,
                           unresolved_turns=trailing_clarifications(hist), policy=self.policy)
                if d is not None:
                    outcomes[msg.inbound_key] = self._escalate(w, d.reason.value, d.detail, d.priority)
                    active[w.customer_id] = {"planned": True}
                    holding_sent[w.customer_id] = False
                    continue
                ask.append(item)
            for item, result in zip(ask, self._ask_agent(ctx, ask)):
                w = item["work"]
                if result.action == "escalate":
                    o = self._escalate(w, (result.reason or EscalationReason.AGENT).value,
                                       result.text[:500], "normal")
                    active[w.customer_id] = {"planned": True}
                    holding_sent[w.customer_id] = False
                else:
                    kind = ReplyKind.AGENT if result.action == "answer" else ReplyKind.CLARIFY
                    o = Outcome(w, "answered" if result.action == "answer" else "clarified",
                                reply_kind=kind, reply_text=result.text)
                o.kb_slugs, o.kb_top_score, o.kb_hit, o.tokens = (
                    result.kb_slugs, result.kb_top_score, result.kb_hit, result.tokens)
                outcomes[w.inbound.msg.inbound_key] = o
            for item in rnd:  # later rounds see this round's replies in their history
                o = outcomes[item["work"].inbound.msg.inbound_key]
                if o.reply_text:
                    ctx["history"][item["work"].customer_id].append({
                        "channel": item["work"].inbound.msg.channel.value, "direction": "outbound",
                        "author": "agent", "body": o.reply_text, "subject": None,
                        "occurred_at": datetime.now(UTC), "kind": o.reply_kind.value,
                        "channel_message_id": f"reply:{item['work'].inbound.msg.inbound_key}"})
        return [outcomes[i["work"].inbound.msg.inbound_key] for i in items]

    @staticmethod
    def _history_before(history: list[dict], msg) -> list[dict]:
        """Messages before this one (the history query also returns later ones of the batch)."""
        out = []
        for h in history:
            if h["direction"] == "inbound" and h["channel"] == msg.channel.value \
                    and h["channel_message_id"] == msg.channel_message_id:
                break
            out.append(h)
        return out[-HISTORY:]

    def _escalate(self, w: Work, reason: str, detail: str, priority: str) -> Outcome:
        now = datetime.now(UTC)
        reopens = None
        if self.sla_config is not None:
            from flows.sla import next_business_opening

            try:
                reopens = next_business_opening(now, self.sla_config)
            except ValueError:
                reopens = None
        return Outcome(w, "escalated", reply_kind=ReplyKind.ESCALATION_ACK,
                       reply_text=escalation_ack_text(reopens, now), escalation_reason=reason,
                       escalation_detail=detail, priority=priority)

    def _ask_agent(self, ctx: dict, items: list[dict]) -> list[AgentResult]:
        if not items:
            return []
        reqs = [AgentRequest(inbound=i["work"].inbound.msg, customer_id=i["work"].customer_id,
                             customer_name=ctx["names"].get(i["work"].customer_id)
                             or i["work"].inbound.msg.sender_name,
                             history=[HistoryItem(h["channel"], h["direction"], h["author"], h["body"],
                                                  h["occurred_at"]) for h in i["hist"]],
                             previous_contact=previous_contact(
                                 i["hist"], i["work"].inbound.msg.channel.value, i["conv"]["id"]))
                for i in items]
        for i, r in zip(items, reqs):
            i["req"] = r
        chunks = [reqs[k:k + AGENT_CHUNK] for k in range(0, len(reqs), AGENT_CHUNK)]
        results: list[AgentResult] = []
        for part in self.pool.map(self._respond_chunk, chunks):
            results.extend(part)
        return results

    def _respond_chunk(self, reqs: Sequence[AgentRequest]) -> list[AgentResult]:
        try:
            if hasattr(self.agent, "respond_many"):
                return list(self.agent.respond_many(reqs))
            return [self.agent.respond(r) for r in reqs]
        except Exception as exc:  # noqa: BLE001 -- an agent failure must not lose the message: escalate
            log.error("support.agent_failed", error=str(exc), messages=len(reqs))
            return [AgentResult("escalate", "agent unavailable", EscalationReason.AGENT)
                    for _ in reqs]

    # --- writes -------------------------------------------------------------------------------
    def _write(self, conn: psycopg.Connection, ctx: dict, outcomes: list[Outcome]) -> list[Any]:
        by_key = {i["work"].inbound.msg.inbound_key: i for i in ctx["items"]}
        events: list[Any] = []
        for w, ticket in ctx["opened"]:
            events.append(support_event(SupportEventKind.TICKET_OPENED, w, ticket_id=ticket["id"],
                                        priority=ticket["priority"]))
        escalation_of: dict[int, int] = {c: e["id"] for c, e in ctx["active"].items()}
        replies, reply_escalations = [], []
        handled, lookups, answered = [], [], []
        for o in outcomes:
            item = by_key[o.work.inbound.msg.inbound_key]
            msg, w, ticket = o.work.inbound.msg, o.work, item["ticket"]
            events.append(support_event(SupportEventKind.RECEIVED, w, ticket_id=ticket["id"],
                                        priority=ticket["priority"], sentiment=w.sentiment))
            esc_id = None
            if o.handled_as == "escalated":
                row = conn.execute(
                    "INSERT INTO escalations (customer_id, conversation_id, ticket_id, inbound_key, channel, "
                    "reason, detail, priority, holding_ack_sent) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,false) "
                    "ON CONFLICT (inbound_key) DO UPDATE SET detail = EXCLUDED.detail RETURNING id",
                    (w.customer_id, item["conv"]["id"], ticket["id"], msg.inbound_key, msg.channel.value,
                     o.escalation_reason, o.escalation_detail, o.priority)).fetchone()
                esc_id = row["id"]
                escalation_of[w.customer_id] = esc_id
                conn.execute("UPDATE tickets SET status='escalated', updated_at=now(), priority = "
                             "CASE WHEN %s IN ('high','urgent') THEN %s ELSE priority END WHERE id=%s",
                             (o.priority, o.priority, ticket["id"]))
                events.append(support_event(SupportEventKind.ESCALATED, w, ticket_id=ticket["id"],
                                            priority=o.priority, reason=o.escalation_reason))
                events.append(Escalation(escalation_id=esc_id, customer_id=w.customer_id,
                                         conversation_id=item["conv"]["id"], ticket_id=ticket["id"],
                                         channel=msg.channel, reason=EscalationReason(o.escalation_reason),
                                         detail=o.escalation_detail[:500], inbound_key=msg.inbound_key,
                                         priority=o.priority))
            elif o.handled_as == "attached":
                esc_id = escalation_of.get(w.customer_id)
                if o.holding and esc_id is not None:
                    conn.execute("UPDATE escalations SET holding_ack_sent = true WHERE id = %s", (esc_id,))
            handled.append((o.handled_as, esc_id, msg.channel.value, msg.channel_message_id))
            if o.kb_top_score is not None or o.kb_slugs:
                lookups.append((msg.inbound_key, msg.channel.value, msg.body[:2000],
                                o.kb_slugs[0] if o.kb_slugs else None, o.kb_top_score,
                                o.handled_as == "answered"))
            if o.handled_as == "answered":
                answered.append((ticket["id"],))
            if o.reply_text:
                replies.append(self._reply(o, item, ctx))
                reply_escalations.append(esc_id)
                events.append(support_event(SupportEventKind.REPLIED, w, ticket_id=ticket["id"],
                                            priority=ticket["priority"], reply_kind=o.reply_kind.value,
                                            kb_hit=o.kb_hit, agent_tokens=o.tokens))
        # One pipelined round trip per statement for the whole batch (executemany).
        with conn.cursor() as cur:
            cur.executemany("UPDATE messages SET handled_as=%s, handled_at=now(), escalation_id=%s "
                            "WHERE channel=%s AND channel_message_id=%s", handled)
            cur.executemany("INSERT INTO kb_lookups (inbound_key, channel, query, top_slug, score, "
                            "answered) VALUES (%s,%s,%s,%s,%s,%s) ON CONFLICT (inbound_key) DO NOTHING",
                            lookups)
            cur.executemany("UPDATE tickets SET status='answered', updated_at=now() WHERE id=%s "
                            "AND status='open'", answered)
        enqueue_replies(conn, replies, escalation_ids=reply_escalations)
        return events

    def _reply(self, o: Outcome, item: dict, ctx: dict) -> Reply:
        msg, w = o.work.inbound.msg, o.work
        prev = previous_contact(item.get("hist") or [], msg.channel.value, item["conv"]["id"])
        name = ctx["names"].get(w.customer_id) or msg.sender_name
        if msg.channel.value == "web":
            # The ticket page is public to whoever holds the ticket id: greet with the name
            # typed on this ticket and quote no contact from another channel.
            prev, name = None, msg.sender_name
        f = format_reply(msg.channel, o.reply_text,
                         customer_name=name,
                         inbound_subject=msg.subject, inbound_metadata=msg.metadata,
                         previous_contact=prev, kind=o.reply_kind)
        headers = dict(f.headers)
        return Reply(inbound_key=msg.inbound_key, kind=o.reply_kind, channel=msg.channel,
                     customer_id=w.customer_id, conversation_id=item["conv"]["id"],
                     ticket_id=item["ticket"]["id"],
                     recipient=recipient_for(msg, w.inbound.identifiers), subject=f.subject,
                     body=f.body, parts=f.parts, html=f.html, headers=headers,
                     thread_id=msg.thread_id)

    def _progress(self, conn: psycopg.Connection, batch: list[Work]) -> None:
        last: dict[tuple[str, int], int] = {}
        for w in batch:
            k = (w.inbound.topic, w.inbound.partition)
            last[k] = max(last.get(k, -1), w.inbound.offset)
        conn.cursor().executemany(UPSERT_PROGRESS, [(self.flow_name, t, p, o + 1)
                                                    for (t, p), o in sorted(last.items())])


def previous_contact(history: list[dict], channel: str | None = None,
                     conversation_id: int | None = None) -> PreviousContact | None:
    """The earlier contact a reply should acknowledge (formatting does so only when it was on
    another channel): how this conversation started if that was on another channel, else
    the latest earlier message on another channel, else the latest earlier message."""
    inbound = [h for h in history if h["direction"] == "inbound"]
    if not inbound:
        return None
    same_conv = [h for h in inbound if conversation_id is not None
                 and h.get("conversation_id") == conversation_id]
    other = [h for h in inbound if h["channel"] != channel]
    if same_conv and same_conv[0]["channel"] != channel:
        h = same_conv[0]
    elif other:
        h = other[-1]
    else:
        h = inbound[-1]
    about = h.get("subject") or " ".join((h.get("body") or "").split())[:60]
    return PreviousContact(h["channel"], h["occurred_at"], about)


def write_dead_letters_with_progress(flow_name: str):
    """Dead letters (table) plus their offsets in flow_progress, in the sink's transaction."""
    from sinks.metrics_store import write_dead_letters

    def write(conn: psycopg.Connection, dead: list) -> None:
        write_dead_letters(conn, dead)
        rows = {}
        for d in dead:
            if d.partition is not None and d.offset is not None:
                k = (d.source_topic, d.partition)
                rows[k] = max(rows.get(k, -1), d.offset)
        conn.cursor().executemany(UPSERT_PROGRESS, [(flow_name, t, p, o + 1) for (t, p), o in rows.items()])
    return write
