"""The support dataflow: channel topics -> identity -> sentiment -> load -> decide -> persist.

    channel.{email,whatsapp,web}.inbound ─ parse ─┬─ invalid ────────────────> dead_letters table
                                                  └─ by identifier: identity (cached, TTL)
        ─┬─ identity DB error (not a lost connection) ─> dead_letters table
         └─ by customer: sentiment + trend (TTL) ─ gather into batches (<= FLOW_BATCH_WAIT_MS)
        ─ load_context   one read: survivors, replays, conversations, tickets, escalations, history
        ─ decide         pure (flows/support_decide.py): continuity, takeover, policy, agent, format
        ─ persist        one transaction: domain rows, reply outbox, event outbox, flow_progress
                         (a batch that fails is re-run, then split; a message that still fails
                         is dead-lettered)
    event outbox ─ `fte relay` ─> support.events, support.escalations (at least once)

Identity is resolved per batch of messages read: a single proved identifier is served from an
in-process cache (TTL, bounded), the batch's misses go to Postgres together (one set-based
transaction, sinks/identity.py: resolve_batch); a message with several identifiers (web
form: email + phone) always goes to Postgres so they get linked (and two customers merged). After resolution the stream is
re-keyed by customer id, so every message of one customer — whatever channel — is handled
by one worker, in order. A cache entry may still name a customer that was merged since;
load_context maps ids to the surviving customer with one query per batch. Cached identifiers
and per-customer state are dropped after FLOW_STATE_TTL_S without messages, so a flood of new
senders cannot grow memory without bound.

Recovery: offsets and state are snapshotted together; load_context skips messages already
handled (messages.handled_at) and every write is idempotent, so a replay sends nothing twice;
the events of a batch are committed with its rows, so a crash after the commit loses none.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import bytewax.operators as op
from bytewax.connectors.kafka import KafkaSource
from bytewax.dataflow import Dataflow
from bytewax.inputs import Source
from bytewax.operators import StatefulLogic
from bytewax.outputs import Sink

from flows import rate_limit
from flows.linking import cacheable
from flows.rate_limit import Verdict
from flows.sentiment import Trend, score
from flows.support_steps import Inbound, Work, parse_inbound
from schema.events import DeadLetter, describe_error

FLOW_NAME = "support"
BATCH_BUCKETS = 4  # batching keys: at most this many workers share the handler work


class ExpiringState(StatefulLogic):
    """Per-key state for `op.stateful` that is discarded `ttl` after the key's last item.

    `step(state, item) -> (state, emitted items)`; the snapshot carries the last-seen time,
    so the expiry survives a restart."""

    def __init__(self, step: Callable[[Any, Any], tuple[Any, list]], ttl: timedelta,
                 resume: tuple[Any, datetime] | None = None):
        self.step = step
        self.ttl = ttl
        self.state, self.seen = resume if resume is not None else (None, None)

    def on_item(self, value):
        self.state, out = self.step(self.state, value)
        self.seen = datetime.now(UTC)
        return out, self.state is None  # nothing worth keeping: discard at once

    def on_notify(self):
        return [], StatefulLogic.DISCARD

    def notify_at(self) -> datetime | None:
        return None if self.seen is None else self.seen + self.ttl

    def snapshot(self):
        return (self.state, self.seen)


def expiring(step: Callable, ttl: timedelta) -> Callable:
    return lambda resume: ExpiringState(step, ttl, resume)


class IdentityStage:
    """Identity resolution for a batch of messages as they are read: emits (customer id,
    Inbound) per message, or a DeadLetter when resolution fails for a reason other than a
    lost connection (`fatal`: stop, resume from the snapshot later).

    A single proved identifier is served from an in-process cache (the customer id, kept
    `ttl` after the identifier's last message and at most `max_entries`, least recently seen
    dropped first, so memory stays bounded); cache misses go to `resolve_many` together, one
    resolution per identifier, unproved ones never cached (flows/linking.py). Postgres is the
    truth, so a restart only starts with a cold cache."""

    def __init__(self, resolve_many: Callable[[list[Inbound]], list[int | Exception]], ttl: timedelta,
                 fatal: tuple[type[BaseException], ...] = (), max_entries: int = 200_000):
        self.resolve_many, self.ttl_s, self.fatal = resolve_many, ttl.total_seconds(), fatal
        self.max_entries = max_entries
        self.cache: OrderedDict[str, tuple[int, float]] = OrderedDict()
        self.lock = threading.Lock()  # workers of one process share the cache

    def __call__(self, items: list[Inbound]) -> list:
        now = time.monotonic()
        out: list[Any] = [None] * len(items)
        misses: dict[str, list[int]] = {}  # one resolution per cacheable identifier
        with self.lock:
            for i, item in enumerate(items):
                if not cacheable(item.identifiers):
                    misses[f"#{i}"] = [i]
                    continue
                hit = self.cache.get(item.key)
                if hit is not None and now - hit[1] < self.ttl_s:
                    self.cache[item.key] = (hit[0], now)
                    self.cache.move_to_end(item.key)
                    out[i] = (hit[0], item)
                else:
                    misses.setdefault(item.key, []).append(i)
        if misses:
            keys = list(misses)
            try:
                results = self.resolve_many([items[misses[k][0]] for k in keys])
            except self.fatal:
                raise
            except Exception as exc:  # noqa: BLE001 -- the batch failed as a whole: every miss
                results = [exc] * len(keys)
            with self.lock:
                for key, result in zip(keys, results):
                    if isinstance(result, self.fatal):
                        raise result
                    for i in misses[key]:
                        out[i] = (result, items[i]) if not isinstance(result, Exception) \
                            else self.dead_letter(items[i], result)
                    if not key.startswith("#") and not isinstance(result, Exception):
                        self.cache[key] = (result, now)
                        self.cache.move_to_end(key)
                self._evict(now)
        return out

    def _evict(self, now: float) -> None:
        while self.cache and (len(self.cache) > self.max_entries
                              or now - next(iter(self.cache.values()))[1] >= self.ttl_s):
            self.cache.popitem(last=False)

    @staticmethod
    def dead_letter(item: Inbound, exc: BaseException) -> DeadLetter:
        return DeadLetter.for_raw(
            source_topic=item.topic, partition=item.partition, offset=item.offset,
            key=item.key.encode(), raw=item.msg.to_bytes(),
            reason=f"identity: {describe_error(exc)}"[:2000])


def one_by_one(resolve: Callable[[Inbound], int], fatal: tuple[type[BaseException], ...] = ()):
    """`resolve_many` from a function resolving one message."""
    def resolve_many(items: list[Inbound]) -> list[int | Exception]:
        out: list[int | Exception] = []
        for item in items:
            try:
                out.append(resolve(item))
            except fatal:
                raise
            except Exception as exc:  # noqa: BLE001 -- dead-lettered by IdentityStage
                out.append(exc)
        return out
    return resolve_many


def sentiment_step(trend: Trend | None, item: tuple[int, Inbound, Verdict]) -> tuple[Trend, list[Work]]:
    customer_id, inbound, verdict = item
    msg = inbound.msg
    s = score(f"{msg.subject}. {msg.body}" if msg.subject and not msg.subject.lower().startswith("re:")
              else msg.body)
    trend = (trend or Trend()).update(s)
    return trend, [Work(inbound, customer_id, s, trend, verdict.value)]


def build_flow(source: Source[Any], *, resolve: Callable[[Inbound], int] | None = None, stages,
               dead_letters_db: Sink, fold_gmail: bool = False, region: str = "US",
               batch_size: int = 500, batch_wait: timedelta = timedelta(milliseconds=50),
               state_ttl: timedelta = timedelta(days=7),
               fatal: tuple[type[BaseException], ...] = (),
               rate_limit_per_minute: int = rate_limit.LIMIT,
               resolve_many: Callable[[list[Inbound]], list[int | Exception]] | None = None) -> Dataflow:
    """`stages` has load_step, decide_step and persist_step (sinks/support_store.py);
    identity through `resolve_many` (a batch of messages at once) or `resolve` (one)."""
    flow = Dataflow(FLOW_NAME)
    raw = op.input("inbound_in", flow, source)
    parsed = op.map("parse", raw, lambda m: parse_inbound(m, fold_gmail=fold_gmail, region=region))
    valid = op.branch("is_valid", parsed, lambda x: isinstance(x, Inbound))

    # Identity on the worker that read the messages (Kafka keys them by sender identifier):
    # each batch's cache misses resolved together. (customer id, Inbound) | DeadLetter
    identity = IdentityStage(resolve_many or one_by_one(resolve, fatal), state_ttl, fatal)
    resolved = op.flat_map_batch("identity", valid.trues, identity)
    identity_ok = op.branch("is_resolved", resolved, lambda x: not isinstance(x, DeadLetter))
    by_customer = op.key_on("by_customer", identity_ok.trues, lambda cv: str(cv[0]))
    # One message limit per customer across every ingress replica; state expires when idle.
    # (customer id, (customer id, Inbound, Verdict))
    limited = op.stateful("rate_limit", by_customer, rate_limit.builder(
        limit=rate_limit_per_minute, received_at=lambda inbound: inbound.msg.received_at))
    work = op.map("work", op.stateful("sentiment", limited, expiring(sentiment_step, state_ttl)),
                  lambda kv: kv[1])
    # Gather work into larger batches: one load, one decide and one persist per batch instead
    # of one per tiny upstream batch. A customer always maps to the same bucket, so their
    # messages stay in order; buckets spread batches over the workers.
    buckets = op.key_on("by_bucket", work, lambda w: str(w.customer_id % BATCH_BUCKETS))
    batches = op.map("batch", op.collect("gather", buckets, timeout=batch_wait, max_size=batch_size),
                     lambda kv: kv[1])
    contexts = op.map("load_context", batches, stages.load_step)
    plans = op.map("decide", contexts, stages.decide_step)
    # persist returns the dead letters of messages that could not be handled (poison messages).
    failed = op.flat_map("persist", plans, stages.persist_step)
    dead = op.merge("dead_letters", valid.falses, identity_ok.falses, failed)
    op.output("dead_letters_db", dead, dead_letters_db)
    return flow


def build_kafka_flow(settings, *, agent=None) -> Dataflow:
    """Production wiring: Kafka in, Postgres, the configured agent (events leave through the
    event outbox and `fte relay`)."""
    import psycopg

    from flows.agent import build_agent
    from flows.policy import load_policy, with_router
    from flows.routing import load_router
    from schema.topics import INBOUND_BY_CHANNEL, topic_name
    from sinks.metrics_store import PostgresSink
    from sinks.support_store import SupportStages, write_dead_letters_with_progress

    brokers = [settings.kafka_bootstrap]
    topics = [topic_name(t, settings.TOPIC_PREFIX) for t in INBOUND_BY_CHANNEL.values()]
    sla_config = None
    if settings.SLA_CONFIG_FILE and settings.SLA_CONFIG_FILE.exists():
        from flows.sla import load_sla_config

        sla_config = load_sla_config(settings.SLA_CONFIG_FILE)
    from fte.observability import ObservedAgent, observe_stages

    router = load_router(settings)  # the learned routing model, loaded once at start
    stages = SupportStages(settings.database_url, ObservedAgent(agent or build_agent(settings, router)),
                           with_router(load_policy(settings.ESCALATION_POLICY_FILE), router),
                           reopen_hours=settings.CONVERSATION_REOPEN_HOURS,
                           concurrency=settings.AGENT_CONCURRENCY, sla_config=sla_config,
                           rate_per_s=settings.AGENT_RATE_PER_S,
                           timeout_s=settings.AGENT_BATCH_TIMEOUT_S)
    return build_flow(
        KafkaSource(brokers, topics, raise_on_errors=False, batch_size=settings.FLOW_BATCH_SIZE),
        resolve_many=identity_batch_resolver(settings),
        stages=observe_stages("support-flow", stages),
        dead_letters_db=PostgresSink(settings.database_url, write_dead_letters_with_progress(FLOW_NAME),
                                     "dead_letters"),
        fold_gmail=settings.EMAIL_FOLD_GMAIL_DOTS, region=settings.DEFAULT_PHONE_REGION,
        batch_size=settings.FLOW_BATCH_SIZE,
        batch_wait=timedelta(milliseconds=settings.FLOW_BATCH_WAIT_MS),
        state_ttl=timedelta(seconds=settings.FLOW_STATE_TTL_S),
        fatal=(psycopg.OperationalError,),
    )


def identity_resolver(settings) -> Callable[[Inbound], int]:
    """Resolve through Postgres with a connection of the process pool."""
    from schema.db import pooled
    from sinks.identity import resolve_customer

    database_url = settings.database_url

    def resolve(item: Inbound) -> int:
        with pooled(database_url) as conn, conn.transaction():
            customer_id, _ = resolve_customer(conn, item.identifiers, channel=item.msg.channel.value,
                                              display_name=item.msg.sender_name,
                                              origin=item.msg.inbound_key)
            return customer_id
    return resolve


def identity_batch_resolver(settings) -> Callable[[list[Inbound]], list[int | Exception]]:
    """Resolve a batch's cache misses through Postgres (sinks/identity.py: resolve_batch)."""
    from schema.db import pooled
    from sinks.identity import resolve_batch

    database_url = settings.database_url

    def resolve_many(items: list[Inbound]) -> list[int | Exception]:
        with pooled(database_url) as conn:
            return resolve_batch(conn, [(i.identifiers, i.msg.channel.value, i.msg.sender_name,
                                         i.msg.inbound_key) for i in items])
    return resolve_many


def _module_flow() -> Dataflow:
    from fte.settings import get_settings

    return build_kafka_flow(get_settings())


def __getattr__(name: str):
    # `python -m bytewax.run flows.support:flow` builds the flow on first access only, so
    # importing this module (tests, the eval command) never connects anywhere.
    if name == "flow":
        return _module_flow()
    raise AttributeError(name)
