"""The support flow's Postgres edges: load_context (one batched read) and persist (one
transaction), plus the agent caller the decide stage is given.

    load_context(batch) -> BatchContext     reads: merge survivors, already-handled messages
                                            (a replay), names, conversations, tickets, active
                                            escalations, recent history; reserves row ids
    decide (flows/support_decide.py)        pure
    persist(plan)                           writes: conversations, switches, tickets,
                                            escalations, inbound messages (handled), reply
                                            outbox + outbound messages, kb lookups, ticket
                                            status, one event-outbox row, flow_progress

Connections come from the process pool (schema/db.py). Every write is idempotent, so a
re-emitted batch changes nothing, and the events of a batch commit with its rows: the relay
(sinks/event_relay.py) publishes them even if this process dies right after the commit.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

import psycopg

from flows.agent import AgentRequest, AgentResult
from flows.support_decide import HISTORY, decide_batch
from flows.support_model import BatchContext, BatchPlan
from flows.support_steps import Work
from fte.logs import get_logger
from schema.db import pooled
from schema.events import DeadLetter, EscalationReason, describe_error
from schema.queries import events as event_queries
from schema.queries import support as q
from sinks.identity import survivors
from sinks.outbox import enqueue_replies

log = get_logger(__name__)
# The local agent's work is in-process CPU (one routing call and one retrieval per call):
# threads only contend for the GIL, so a whole round goes as one chunk.
AGENT_CHUNK = 500
RETRYABLE = (psycopg.errors.UniqueViolation, psycopg.errors.DeadlockDetected,
             psycopg.errors.SerializationFailure)


def load_context(conn: psycopg.Connection, batch: list[Work]) -> BatchContext:
    """Everything the decisions need, in one read-only transaction."""
    with conn.transaction():
        ids = survivors(conn, sorted({w.customer_id for w in batch}))
        batch = [w if ids[w.customer_id] == w.customer_id else
                 replace(w, customer_id=ids[w.customer_id]) for w in batch]
        done = q.handled_keys(conn, [(w.inbound.msg.channel.value, w.inbound.msg.channel_message_id)
                                     for w in batch])
        todo = [w for w in batch if (w.inbound.msg.channel.value, w.inbound.msg.channel_message_id)
                not in done]
        if len(todo) < len(batch):
            log.info("support.replay_skipped", messages=len(batch) - len(todo))
        customers = sorted({w.customer_id for w in todo})
        if not customers:
            return BatchContext(batch, [], {}, {}, {}, {}, {}, [], [])
        convs = q.latest_conversations(conn, customers)
        conv_ids, esc_ids = q.reserve_ids(conn, len(todo))
        return BatchContext(
            batch=batch, todo=todo, names=q.customer_names(conn, customers), conversations=convs,
            tickets=q.active_tickets(conn, [c.id for c in convs.values()]),
            active=q.active_escalations(conn, customers),
            history=q.recent_history(conn, customers, HISTORY),
            conversation_ids=conv_ids, escalation_ids=esc_ids)


def persist(conn: psycopg.Connection, plan: BatchPlan, *, flow_name: str = "support") -> None:
    """Every row of the batch and its events, in one transaction."""
    with conn.transaction():
        q.close_conversations(conn, plan.closed_conversations)
        q.reopen_conversations(conn, plan.reopened_conversations)
        q.insert_conversations(conn, plan.new_conversations, plan.first_channel)
        q.touch_conversations(conn, plan.touched_conversations)
        q.insert_channel_switches(conn, plan.switches)
        q.upsert_tickets(conn, plan.tickets)
        q.insert_escalations(conn, plan.escalations)
        q.insert_handled_inbound(conn, plan.messages)
        q.escalate_tickets(conn, plan.escalations)
        q.mark_holding_sent(conn, plan.holding_sent)
        q.insert_kb_lookups(conn, plan.kb_lookups)
        q.mark_tickets_answered(conn, plan.answered_tickets)
        enqueue_replies(conn, plan.replies, escalation_ids=plan.reply_escalations)
        event_queries.insert_event_batch(conn, event_queries.batch_key(plan.inbound_keys), plan.events)
        last: dict[tuple[str, int], int] = {}
        for w in plan.batch:
            k = (w.inbound.topic, w.inbound.partition)
            last[k] = max(last.get(k, -1), w.inbound.offset)
        q.record_progress(conn, flow_name, last)


class AgentCaller:
    """`ask` for the decide stage: a round's requests in chunks, chunks concurrently.

    Chunks of `chunk` requests go to `respond_many` (the local agent routes and retrieves for
    a whole chunk at once, so a round is one chunk);
    an agent that makes one provider call per request (OpenAI) gets chunks of one, so up to
    `concurrency` requests are in flight at once and one slow answer never holds the others.
    `rate_per_s` bounds provider requests (a moving window, the provider's rate limit);
    `timeout_s` bounds the wait for a chunk: a message whose answer is late, or whose agent
    failed, is escalated to a person instead of being lost (the agent's own client keeps its
    per-call timeout and tenacity retry budget)."""

    def __init__(self, agent, *, concurrency: int = 8, chunk: int = AGENT_CHUNK,
                 rate_per_s: float = 0.0, timeout_s: float | None = None):
        self.agent = agent
        self.chunk = max(1, chunk)
        self.timeout_s = timeout_s
        self.pool = ThreadPoolExecutor(max_workers=max(1, concurrency), thread_name_prefix="agent")
        self.limiter = self.limit = None
        if rate_per_s > 0:
            from limits import RateLimitItemPerSecond, storage, strategies

            self.limiter = strategies.MovingWindowRateLimiter(storage.MemoryStorage())
            self.limit = RateLimitItemPerSecond(max(1, round(rate_per_s)))

    def __call__(self, reqs: Sequence[AgentRequest]) -> list[AgentResult]:
        chunks = [list(reqs[k:k + self.chunk]) for k in range(0, len(reqs), self.chunk)]
        if len(chunks) == 1 and self.timeout_s is None:
            return self._respond(chunks[0])
        futures = [self.pool.submit(self._respond, c) for c in chunks]
        deadline = None if self.timeout_s is None else time.monotonic() + self.timeout_s
        out: list[AgentResult] = []
        for c, f in zip(chunks, futures):
            try:
                out.extend(f.result(None if deadline is None else max(0.0, deadline - time.monotonic())))
            except FutureTimeout:
                log.error("support.agent_timeout", messages=len(c))
                out.extend(AgentResult("escalate", "the answering service did not answer in time",
                                       EscalationReason.AGENT) for _ in c)
        return out

    def _wait_for_rate(self) -> None:
        while self.limiter is not None and not self.limiter.hit(self.limit):
            time.sleep(0.01)

    def _respond(self, reqs: list[AgentRequest]) -> list[AgentResult]:
        try:
            self._wait_for_rate()
            if hasattr(self.agent, "respond_many"):
                return list(self.agent.respond_many(reqs))
            return [self.agent.respond(r) for r in reqs]
        except Exception as exc:  # noqa: BLE001 -- an agent failure must not lose the message: escalate
            log.error("support.agent_failed", error=str(exc), messages=len(reqs))
            return [AgentResult("escalate", "agent unavailable", EscalationReason.AGENT) for _ in reqs]


@dataclass(frozen=True)
class Staged:
    """A batch between two stages: the stage's output, or the error that stopped it."""

    batch: list[Work]
    value: Any = None
    error: BaseException | None = None


class SupportStages:
    """The three stages bound to their dependencies, for the dataflow's map steps."""

    def __init__(self, database_url: str, agent, policy, *, reopen_hours: float = 24.0,
                 concurrency: int = 8, sla_config=None, flow_name: str = "support",
                 rate_per_s: float = 0.0, timeout_s: float | None = None):
        self.database_url = database_url
        # One provider call per request (OpenAI): one request per chunk, all in flight at once.
        per_request = str(getattr(agent, "provider", "local")).startswith("openai")
        self.ask = AgentCaller(agent, concurrency=concurrency, chunk=1 if per_request else AGENT_CHUNK,
                               rate_per_s=rate_per_s, timeout_s=timeout_s)
        self.policy = policy
        self.reopen = timedelta(hours=reopen_hours)
        self.sla_config = sla_config
        self.flow_name = flow_name

    # --- stages, each a function of its input ------------------------------------------------
    def load(self, batch: list[Work]) -> BatchContext:
        with pooled(self.database_url) as conn:
            return load_context(conn, batch)

    def decide(self, ctx: BatchContext) -> BatchPlan:
        return decide_batch(ctx, ask=self.ask, policy=self.policy, reopen=self.reopen,
                            sla_config=self.sla_config)

    def persist(self, plan: BatchPlan) -> None:
        with pooled(self.database_url) as conn:
            persist(conn, plan, flow_name=self.flow_name)

    # --- the dataflow's steps: a failure travels on to persist, which recovers the batch --------
    def load_step(self, batch: list[Work]) -> Staged:
        try:
            return Staged(batch, self.load(batch))
        except psycopg.OperationalError:
            raise
        except Exception as exc:  # noqa: BLE001 -- recovered (retry, split, dead letter) in persist_step
            return Staged(batch, error=exc)

    def decide_step(self, staged: Staged) -> Staged:
        if staged.error is not None:
            return staged
        try:
            return Staged(staged.batch, self.decide(staged.value))
        except psycopg.OperationalError:
            raise
        except Exception as exc:  # noqa: BLE001 -- recovered in persist_step
            return Staged(staged.batch, error=exc)

    def persist_step(self, staged: Staged) -> list[DeadLetter]:
        """[] when the batch is written; otherwise re-run it (retries, then one message at a
        time) and return the dead letters of the messages that still fail."""
        if staged.error is None:
            try:
                self.persist(staged.value)
                return []
            except psycopg.OperationalError:
                raise
            except Exception as exc:  # noqa: BLE001 -- recovered below
                staged = Staged(staged.batch, error=exc)
        log.warning("support.batch_recover", error=str(staged.error), messages=len(staged.batch))
        return self(staged.batch)

    # --- a batch through all three, with retries and poison isolation ---------------------------
    def __call__(self, batch: list[Work]) -> list[Any]:
        """load -> decide -> persist; returns dead letters (a message that cannot be handled)."""
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
            return [self.dead_letter(batch[0], exc)]

    def _with_retries(self, batch: list[Work]) -> list[Any]:
        for attempt in range(3):
            try:
                self.persist(self.decide(self.load(batch)))
                return []
            except RETRYABLE as exc:
                # A concurrent batch (another worker holding a just-merged customer) got there
                # first; the transaction rolled back cleanly, so re-read and try again.
                if attempt == 2:
                    raise
                log.warning("support.batch_retry", error=str(exc), messages=len(batch))
        return []

    @staticmethod
    def dead_letter(w: Work, exc: BaseException) -> DeadLetter:
        log.error("support.dead_letter", inbound_key=w.inbound.msg.inbound_key, error=str(exc))
        return DeadLetter.for_raw(source_topic=w.inbound.topic, partition=w.inbound.partition,
                                  offset=w.inbound.offset, key=w.inbound.key.encode(),
                                  raw=w.inbound.msg.to_bytes(),
                                  reason=f"handler: {describe_error(exc)}"[:2000])


def write_dead_letters_with_progress(flow_name: str):
    """Dead letters (table) plus their offsets in flow_progress, in the sink's transaction."""
    from sinks.metrics_store import write_dead_letters

    def write(conn: psycopg.Connection, dead: list) -> None:
        write_dead_letters(conn, dead)
        rows: dict[tuple[str, int], int] = {}
        for d in dead:
            if d.partition is not None and d.offset is not None:
                k = (d.source_topic, d.partition)
                rows[k] = max(rows.get(k, -1), d.offset)
        q.record_progress(conn, flow_name, rows)
    return write
