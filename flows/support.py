"""The support dataflow: channel topics -> identity -> sentiment -> policy/agent -> replies.

    channel.{email,whatsapp,web}.inbound ─ parse ─┬─ invalid ─────────> deadletter topic + table
                                                  └─ by identifier: resolve customer (cached)
        ─ by customer: sentiment + trend ─ gathered into batches (<= FLOW_BATCH_WAIT_MS)
        ─ batch handler (sinks/support_store.py):
              takeover / escalation policy / agent (thread pool) / formatting
              -> Postgres (messages, tickets, escalations, outbox, kb_lookups, flow_progress)
        ─ SupportEvents -> support.events, Escalations -> support.escalations

Identity state is keyed by the normalised sender identifier (the Kafka key) and caches the
customer id; a message with several identifiers (web form: email + phone) always goes to
Postgres so they get linked (and two customers merged). After resolution the stream is
re-keyed by customer id, so every message of one customer — whatever channel — is handled
by one worker, in order. A cache entry may still name a customer that was merged since;
the handler maps ids to the surviving customer with one query per batch.

Recovery: offsets and state are snapshotted together; the handler skips messages already
handled (messages.handled_at) and every write is idempotent, so a replay sends nothing twice.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import bytewax.operators as op
from bytewax.connectors.kafka import KafkaSink, KafkaSinkMessage, KafkaSource
from bytewax.dataflow import Dataflow
from bytewax.inputs import Source
from bytewax.outputs import Sink

from flows.sentiment import Trend, score
from flows.support_steps import Inbound, Work, parse_inbound
from schema.events import DeadLetter, Escalation, SupportEvent

FLOW_NAME = "support"
BATCH_BUCKETS = 4  # batching keys: at most this many workers share the handler work


def dead_letter_message(dead: DeadLetter) -> KafkaSinkMessage[bytes, bytes]:
    return KafkaSinkMessage(key=dead.source_topic.encode(), value=dead.to_bytes())


def event_message(event: SupportEvent | Escalation) -> KafkaSinkMessage[bytes, bytes]:
    return KafkaSinkMessage(key=str(event.customer_id or "").encode(), value=event.to_bytes())


class IdentityStep:
    """stateful_map logic: state = cached customer id for one identifier."""

    def __init__(self, resolve: Callable[[Inbound], int]):
        self.resolve = resolve

    def __call__(self, cached: int | None, item: Inbound) -> tuple[int | None, tuple[int, Inbound]]:
        if cached is not None and len(item.identifiers) == 1:
            return cached, (cached, item)
        customer_id = self.resolve(item)
        return customer_id, (customer_id, item)


def sentiment_step(trend: Trend | None, item: tuple[int, Inbound]) -> tuple[Trend, Work]:
    customer_id, inbound = item
    msg = inbound.msg
    s = score(f"{msg.subject}. {msg.body}" if msg.subject and not msg.subject.lower().startswith("re:")
              else msg.body)
    trend = (trend or Trend()).update(s)
    return trend, Work(inbound, customer_id, s, trend)


def build_flow(source: Source[Any], *, resolve: Callable[[Inbound], int],
               handler: Callable[[list[Work]], list[Any]], events: Sink, escalations: Sink,
               dead_letters_db: Sink, dead_letters_topic: Sink, fold_gmail: bool = False,
               region: str = "US", batch_size: int = 500,
               batch_wait: timedelta = timedelta(milliseconds=50)) -> Dataflow:
    flow = Dataflow(FLOW_NAME)
    raw = op.input("inbound_in", flow, source)
    parsed = op.map("parse", raw, lambda m: parse_inbound(m, fold_gmail=fold_gmail, region=region))
    valid = op.branch("is_valid", parsed, lambda x: isinstance(x, Inbound))

    by_identifier = op.key_on("by_identifier", valid.trues, lambda m: m.key)
    resolved = op.stateful_map("identity", by_identifier, IdentityStep(resolve))
    by_customer = op.key_on("by_customer", op.map("customer_of", resolved, lambda kv: kv[1]),
                            lambda cv: str(cv[0]))
    work = op.map("work", op.stateful_map("sentiment", by_customer, sentiment_step), lambda kv: kv[1])
    # Gather work into larger batches: one handler call (two transactions, one agent round)
    # per batch instead of one per tiny upstream batch. A customer always maps to the same
    # bucket, so their messages stay in order; buckets spread batches over the workers.
    buckets = op.key_on("by_bucket", work, lambda w: str(w.customer_id % BATCH_BUCKETS))
    batches = op.collect("gather", buckets, timeout=batch_wait, max_size=batch_size)
    out = op.flat_map("handle", batches, lambda kv: handler(kv[1]))
    # A message the handler cannot process (a poison message) comes back as a dead letter.
    failed = op.branch("is_handler_dead_letter", out, lambda e: isinstance(e, DeadLetter))
    dead = op.merge("dead_letters", valid.falses, failed.trues)
    op.output("dead_letters_db", dead, dead_letters_db)
    op.output("dead_letters_topic", op.map("dead_letter_msg", dead, dead_letter_message),
              dead_letters_topic)
    is_escalation = op.branch("is_escalation", failed.falses, lambda e: isinstance(e, Escalation))
    op.output("escalations_out", op.map("escalation_msg", is_escalation.trues, event_message), escalations)
    op.output("events_out", op.map("event_msg", is_escalation.falses, event_message), events)
    return flow


def build_kafka_flow(settings, *, agent=None) -> Dataflow:
    """Production wiring: Kafka in and out, Postgres, the configured agent."""
    from flows.agent import build_agent
    from flows.policy import load_policy, with_router
    from flows.routing import load_router
    from schema.topics import (
        DEADLETTER,
        ESCALATIONS,
        INBOUND_BY_CHANNEL,
        SUPPORT_EVENTS,
        topic_name,
    )
    from sinks.metrics_store import PostgresSink
    from sinks.support_store import SupportHandler, write_dead_letters_with_progress

    brokers = [settings.kafka_bootstrap]
    prefix = settings.TOPIC_PREFIX
    topics = [topic_name(t, prefix) for t in INBOUND_BY_CHANNEL.values()]
    producer = {"enable.idempotence": "true", "acks": "all", "linger.ms": "5"}
    sla_config = None
    if settings.SLA_CONFIG_FILE and settings.SLA_CONFIG_FILE.exists():
        from flows.sla import load_sla_config

        sla_config = load_sla_config(settings.SLA_CONFIG_FILE)
    router = load_router(settings)  # the learned routing model, loaded once at start
    handler = SupportHandler(settings.database_url, agent or build_agent(settings, router),
                             with_router(load_policy(settings.ESCALATION_POLICY_FILE), router),
                             reopen_hours=settings.CONVERSATION_REOPEN_HOURS,
                             concurrency=settings.AGENT_CONCURRENCY, sla_config=sla_config)
    return build_flow(
        KafkaSource(brokers, topics, raise_on_errors=False, batch_size=settings.FLOW_BATCH_SIZE),
        resolve=identity_resolver(settings),
        handler=handler,
        events=KafkaSink(brokers, topic_name(SUPPORT_EVENTS, prefix), add_config=producer),
        escalations=KafkaSink(brokers, topic_name(ESCALATIONS, prefix), add_config=producer),
        dead_letters_db=PostgresSink(settings.database_url, write_dead_letters_with_progress(FLOW_NAME),
                                     "dead_letters"),
        dead_letters_topic=KafkaSink(brokers, topic_name(DEADLETTER, prefix), add_config=producer),
        fold_gmail=settings.EMAIL_FOLD_GMAIL_DOTS, region=settings.DEFAULT_PHONE_REGION,
        batch_size=settings.FLOW_BATCH_SIZE,
        batch_wait=timedelta(milliseconds=settings.FLOW_BATCH_WAIT_MS),
    )


def identity_resolver(settings) -> Callable[[Inbound], int]:
    """Resolve through Postgres, one connection per worker thread."""
    import threading

    import psycopg

    from sinks.identity import resolve_customer

    database_url = settings.database_url
    local = threading.local()

    def resolve(item: Inbound) -> int:
        conn = getattr(local, "conn", None)
        if conn is None or conn.closed:
            conn = local.conn = psycopg.connect(database_url, connect_timeout=10)
        try:
            with conn.transaction():
                customer_id, _ = resolve_customer(conn, item.identifiers,
                                                  channel=item.msg.channel.value,
                                                  display_name=item.msg.sender_name)
                return customer_id
        except psycopg.OperationalError:
            conn.close()
            raise
    return resolve


def _module_flow() -> Dataflow:
    from fte.settings import get_settings

    return build_kafka_flow(get_settings())


def __getattr__(name: str):
    # `python -m bytewax.run flows.support:flow` builds the flow on first access only, so
    # importing this module (tests, the eval command) never connects anywhere.
    if name == "flow":
        return _module_flow()
    raise AttributeError(name)
