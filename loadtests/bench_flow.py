"""Support flow figures: end-to-end messages/s and p95 latency with the local agent, for the
Bytewax flow (`fte flow`: batches + agent thread pool) and, in the same run, a naive consumer
that does the same work one message at a time (the same parse, identity, sentiment, policy,
agent, formatting and Postgres code, each message in its own round trips).

    python -m loadtests.bench_flow [--messages 1000] [--rate 200] [--customers 300]

End to end = from the moment a message is produced to Kafka until its reply (or escalation)
is committed to Postgres with the outbox row (delivery by the dispatcher is not included).
Messages are produced at `--rate` per second (0 = all at once, a backlog). Uses the stack
from the environment, a scratch database (demo KB loaded) and scratch topic prefixes,
removed afterwards. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg

from fte.kafka import ensure_topics, idempotent_producer
from fte.settings import Settings
from schema.events import Channel, Identifier, IdentifierKind, InboundMessage, utcnow
from schema.identity import identity_key, normalize
from schema.migrate import migrate

REPO = Path(__file__).resolve().parent.parent
QUESTIONS = [
    "How can I track my order?", "What payment methods do you accept?",
    "How do I change my shipping address?", "I forgot my password, how do I recover it?",
    "How long does delivery take?", "Can I get an invoice for my purchase?",
    "How do I create an account?", "How do I subscribe to the newsletter?",
    "How do I cancel my order?", "How do I delete my account?", "I'd like a refund please",
]


def messages(n: int, customers: int, tag: str) -> list[InboundMessage]:
    rng = random.Random(11)
    out = []
    for i in range(n):
        c = rng.randrange(customers)
        channel = rng.choice(list(Channel))
        email = Identifier(kind=IdentifierKind.EMAIL, value=f"b{c}.{tag}@x.com")
        phone = Identifier(kind=IdentifierKind.PHONE, value=f"+1555{(hash(tag) + c) % 10**7:07d}")
        sender = [phone] if channel is Channel.WHATSAPP else [email]
        out.append(InboundMessage(
            channel=channel, channel_message_id=f"{tag}-{i}", sender=sender,
            subject=f"Question {i}" if channel is not Channel.WHATSAPP else None,
            body=f"{rng.choice(QUESTIONS)} (ref {i})", received_at=utcnow(),
            ticket_id=f"T-{tag}-{i}" if channel is Channel.WEB else None))
    return out


def produce(bootstrap: str, prefix: str, msgs: list[InboundMessage], rate: float) -> None:
    producer = idempotent_producer(bootstrap)
    start = time.monotonic()
    for i, m in enumerate(msgs):
        if rate > 0:
            wait = start + i / rate - time.monotonic()
            if wait > 0:
                time.sleep(wait)
        m = m.model_copy(update={"received_at": utcnow()})  # latency starts at produce time
        producer.produce(f"{prefix}channel.{m.channel.value}.inbound", value=m.to_bytes(),
                         key=identity_key(normalize(m.sender[0])).encode())
        producer.poll(0)
    producer.flush(30)


def wait_handled(db: str, tag: str, n: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    with psycopg.connect(db, autocommit=True) as conn:
        while time.monotonic() < deadline:
            done = conn.execute("SELECT count(*) FROM messages WHERE direction='inbound' AND "
                                "handled_at IS NOT NULL AND channel_message_id LIKE %s",
                                (f"{tag}-%",)).fetchone()[0]
            if done >= n:
                return
            time.sleep(0.2)
    raise SystemExit(f"{tag}: only {done}/{n} handled within {timeout}s")


def figures(db: str, tag: str) -> dict:
    with psycopg.connect(db) as conn:
        rows = conn.execute(
            "SELECT extract(epoch FROM handled_at - occurred_at) * 1000, occurred_at, handled_at, "
            "handled_as FROM messages WHERE direction='inbound' AND channel_message_id LIKE %s",
            (f"{tag}-%",)).fetchall()
    lat = sorted(r[0] for r in rows)
    span = (max(r[2] for r in rows) - min(r[1] for r in rows)).total_seconds()
    outcomes: dict[str, int] = {}
    for r in rows:
        outcomes[r[3]] = outcomes.get(r[3], 0) + 1
    return {"n": len(rows), "rate": len(rows) / span, "p50": lat[len(lat) // 2],
            "p95": lat[int(len(lat) * 0.95) - 1], "max": lat[-1], "outcomes": outcomes}


def run_flow(env: dict, bootstrap: str, prefix: str, msgs, rate: float, db: str, tag: str) -> dict:
    proc = subprocess.Popen([sys.executable, "-m", "fte.cli", "flow"], cwd=REPO,
                            env={**os.environ, **env}, stdout=subprocess.DEVNULL,
                            stderr=None if os.environ.get("BENCH_FLOW_LOG_LEVEL") else subprocess.DEVNULL,
                            start_new_session=True)
    try:
        time.sleep(3)  # start-up (imports, KB index) is not part of the figure
        produce(bootstrap, prefix, msgs, rate)
        wait_handled(db, tag, len(msgs), 600)
    finally:
        proc.send_signal(2)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
    return figures(db, tag)


def run_naive(settings: Settings, prefix: str, msgs, rate: float, db: str, tag: str) -> dict:
    """One message at a time: poll, resolve, score, handle (batch of one), commit the offset."""
    from bytewax.connectors.kafka import KafkaSourceMessage
    from confluent_kafka import Consumer

    from flows.agent import build_agent
    from flows.policy import load_policy
    from flows.sentiment import Trend, score
    from flows.sla import load_sla_config
    from flows.support import identity_resolver
    from flows.support_steps import Inbound, Work, parse_inbound
    from sinks.support_store import SupportStages

    handler = SupportStages(db, build_agent(settings), load_policy(settings.ESCALATION_POLICY_FILE),
                             concurrency=1, sla_config=load_sla_config(settings.SLA_CONFIG_FILE))
    resolve = identity_resolver(settings)
    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap, "group.id": f"naive-{tag}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([f"{prefix}channel.{c.value}.inbound" for c in Channel])
    trends: dict[int, Trend] = {}
    producer = threading.Thread(target=produce, args=(settings.kafka_bootstrap, prefix, msgs, rate))
    producer.start()
    done = 0
    while done < len(msgs):
        m = consumer.poll(1.0)
        if m is None or m.error():
            continue
        item = parse_inbound(KafkaSourceMessage(key=m.key(), value=m.value(), topic=m.topic(),
                                                partition=m.partition(), offset=m.offset()))
        if isinstance(item, Inbound):
            cid = resolve(item)
            s = score(item.msg.body)
            trends[cid] = trends.get(cid, Trend()).update(s)
            handler([Work(item, cid, s, trends[cid])])
        consumer.commit(m, asynchronous=False)
        done += 1
    producer.join()
    consumer.close()
    return figures(db, tag)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--messages", type=int, default=1000)
    ap.add_argument("--rate", type=float, default=200.0, help="messages produced per second (0: backlog)")
    ap.add_argument("--customers", type=int, default=300)
    ap.add_argument("--workers", type=int, default=1)
    args = ap.parse_args()
    from fte.logs import configure_logging

    configure_logging(os.environ.get("BENCH_FLOW_LOG_LEVEL", "WARNING"))

    base = Settings()
    parts = urlsplit(base.database_url)
    name = f"bench_{uuid.uuid4().hex[:8]}"
    admin = urlunsplit(parts._replace(path="/postgres"))
    db = urlunsplit(parts._replace(path=f"/{name}"))
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        migrate(db)
        from flows.embeddings import HashingEmbedder
        from flows.knowledge import load_directory
        from schema.db import connect

        with connect(db) as conn, conn.transaction():
            load_directory(conn, REPO / "flows" / "kb_demo", embedder=HashingEmbedder())
        settings = Settings(DATABASE_URL=db, KAFKA_BOOTSTRAP_SERVERS=base.kafka_bootstrap)
        results = {}
        with tempfile.TemporaryDirectory() as recovery:
            prefix = f"bench{uuid.uuid4().hex[:6]}."
            ensure_topics(base.kafka_bootstrap, prefix)
            env = {"DATABASE_URL": db, "KAFKA_BOOTSTRAP_SERVERS": base.kafka_bootstrap,
                   "TOPIC_PREFIX": prefix, "RECOVERY_DIR": recovery, "FLOW_WORKERS": str(args.workers),
                   "LOG_LEVEL": os.environ.get("BENCH_FLOW_LOG_LEVEL", "WARNING"), "OPENAI_API_KEY": ""}
            results["bytewax flow"] = run_flow(env, base.kafka_bootstrap, prefix,
                                               messages(args.messages, args.customers, "flow"),
                                               args.rate, db, "flow")
        prefix = f"bench{uuid.uuid4().hex[:6]}."
        ensure_topics(base.kafka_bootstrap, prefix)
        results["naive consumer"] = run_naive(settings, prefix,
                                              messages(args.messages, args.customers, "naive"),
                                              args.rate, db, "naive")
        print(f"support flow benchmark: {args.messages} messages, {args.customers} customers, "
              f"produced at {args.rate or 'max'}/s, local agent, workers={args.workers}, "
              f"cpus={os.cpu_count()}")
        print(f"{'':16}{'msgs/s':>9}{'p50 ms':>10}{'p95 ms':>10}{'max ms':>10}  outcomes")
        for label, r in results.items():
            print(f"{label:16}{r['rate']:9.1f}{r['p50']:10.0f}{r['p95']:10.0f}{r['max']:10.0f}  "
                  f"{dict(sorted(r['outcomes'].items()))}")
    finally:
        from schema.db import close_pools

        close_pools()
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
