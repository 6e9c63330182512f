"""Support flow figures, end to end: from the moment a message is produced to Kafka until its
reply is committed and sent to the channel API sandbox (Gmail / Twilio / web, delivered by
`fte dispatch`); a message attached to a human's case without a reply ends when handled.

The Bytewax flow (`fte flow`) and, in the same run, a naive consumer that does the same work
one message at a time (the same parse, identity, sentiment, load/decide/persist code, a
commit per message) are measured against the same stack, sandbox and dispatcher.

    python -m loadtests.bench_flow --messages N --rate R [--processes P] [--workers W]

Messages are produced at `--rate` per second (0 = all at once, a backlog). Uses the stack
from the environment, a scratch database (demo KB loaded) and scratch topic prefixes,
removed afterwards. The last line printed is JSON:
{"flow_msgs_s", "naive_msgs_s", "ratio", "flow_p50_ms", "flow_p95_ms", "flow_handled_msgs_s",
 "flow_handled_p95_ms" (the flow alone: produced -> handled, reply queued), "processes",
 "workers", "agent", "load_avg"}. Asserts nothing.
"""

from __future__ import annotations

import argparse
import json
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
from loadtests.stats import percentile
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


# Done = the reply is sent to the channel API (or, without a reply, the message is handled).
DONE_SQL = """
SELECT m.occurred_at, coalesce(o.sent_at, m.handled_at) AS done_at, m.handled_as,
       o.id IS NOT NULL AND o.status <> 'sent' AS unsent, m.handled_at
FROM messages m LEFT JOIN reply_outbox o ON o.inbound_key = m.channel || ':' || m.channel_message_id
WHERE m.direction = 'inbound' AND m.handled_at IS NOT NULL AND m.channel_message_id LIKE %s
"""


def wait_done(db: str, tag: str, n: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    done = 0
    with psycopg.connect(db, autocommit=True) as conn:
        while time.monotonic() < deadline:
            rows = conn.execute(DONE_SQL, (f"{tag}-%",)).fetchall()
            done = sum(1 for r in rows if not r[3])
            if done >= n:
                return
            time.sleep(0.2)
    raise SystemExit(f"{tag}: only {done}/{n} answered and sent within {timeout}s")


def figures(db: str, tag: str) -> dict:
    with psycopg.connect(db) as conn:
        raw = conn.execute(DONE_SQL, (f"{tag}-%",)).fetchall()
    rows = [(float((r[1] - r[0]).total_seconds() * 1000), r[0], r[1], r[2]) for r in raw]
    lat = sorted(r[0] for r in rows)
    span = (max(r[2] for r in rows) - min(r[1] for r in rows)).total_seconds()
    outcomes: dict[str, int] = {}
    for r in rows:
        outcomes[r[3]] = outcomes.get(r[3], 0) + 1
    # the flow alone (produced -> handled, reply queued), without the dispatcher's sending
    handled = [(r[4] - r[0]).total_seconds() * 1000 for r in raw]
    handled_span = (max(r[4] for r in raw) - min(r[0] for r in raw)).total_seconds()
    return {"n": len(rows), "rate": len(rows) / span, "p50": percentile(lat, 0.5),
            "p95": percentile(lat, 0.95), "max": lat[-1], "outcomes": outcomes,
            "handled_rate": len(raw) / handled_span, "handled_p95": percentile(handled, 0.95)}


def run_flow(env: dict, bootstrap: str, prefix: str, msgs, rate: float, db: str, tag: str,
             processes: int = 1) -> dict:
    argv = ["flow"] + (["--processes", str(processes)] if processes > 1 else [])
    proc = subprocess.Popen([sys.executable, "-m", "fte.cli", *argv], cwd=REPO,
                            env={**os.environ, **env}, stdout=subprocess.DEVNULL,
                            stderr=None if os.environ.get("BENCH_FLOW_LOG_LEVEL") else subprocess.DEVNULL,
                            start_new_session=True)
    try:
        time.sleep(3)  # start-up (imports, KB index) is not part of the figure
        produce(bootstrap, prefix, msgs, rate)
        wait_done(db, tag, len(msgs), 900)
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
    wait_done(db, tag, len(msgs), 900)
    return figures(db, tag)


def child(argv: list[str], env: dict) -> subprocess.Popen:
    quiet = None if os.environ.get("BENCH_FLOW_LOG_LEVEL") else subprocess.DEVNULL
    return subprocess.Popen([sys.executable, "-m", "fte.cli", *argv], cwd=REPO, env={**os.environ, **env},
                            stdout=subprocess.DEVNULL, stderr=quiet, start_new_session=True)


def wait_serving(url: str, timeout: float) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise SystemExit(f"channel API sandbox not serving {url} within {timeout:.0f}s")


def stop(proc: subprocess.Popen) -> None:
    proc.send_signal(2)
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--messages", type=int, default=1000)
    ap.add_argument("--rate", type=float, default=200.0, help="messages produced per second (0: backlog)")
    ap.add_argument("--customers", type=int, default=300)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--processes", type=int, default=1)
    ap.add_argument("--llm-delay-ms", type=float, default=None,
                    help="use the OpenAI agent against the sandbox, each completion taking this long "
                         "(an answer is two completions: the knowledge-base tool call, then the reply)")
    ap.add_argument("--agent-concurrency", type=int, default=64, help="AGENT_CONCURRENCY with --llm-delay-ms")
    ap.add_argument("--naive-messages", type=int, default=None,
                    help="messages for the naive consumer (default: --messages, at most 1000)")
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
    services: list[subprocess.Popen] = []
    try:
        migrate(db)
        from flows.embeddings import HashingEmbedder
        from flows.knowledge import load_directory
        from schema.db import connect

        with connect(db) as conn, conn.transaction():
            load_directory(conn, REPO / "flows" / "kb_demo", embedder=HashingEmbedder())
        import socket

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        channel_env = {"SANDBOX_PORT": str(port), "TWILIO_API_BASE": f"http://127.0.0.1:{port}",
                       "GMAIL_DISCOVERY_URL": f"http://127.0.0.1:{port}/discovery/gmail/v1/rest",
                       "DATABASE_URL": db, "KAFKA_BOOTSTRAP_SERVERS": base.kafka_bootstrap,
                       "OPENAI_API_KEY": "", "LOG_LEVEL": os.environ.get("BENCH_FLOW_LOG_LEVEL", "WARNING")}
        agent = "local"
        if args.llm_delay_ms is not None:
            agent = f"openai sandbox, {args.llm_delay_ms:.0f} ms per completion"
            channel_env.update({"OPENAI_API_KEY": "sk-sandbox-bench", "OPENAI_BASE_URL": f"http://127.0.0.1:{port}/v1",
                                "SANDBOX_OPENAI_DELAY_MS": str(args.llm_delay_ms),
                                "AGENT_CONCURRENCY": str(args.agent_concurrency)})
        services.append(child(["sandbox"], channel_env))
        wait_serving(f"http://127.0.0.1:{port}/discovery/gmail/v1/rest", 60)
        services.append(child(["dispatch"], channel_env))
        settings = Settings(**{k: v for k, v in channel_env.items()
                               if k not in ("SANDBOX_PORT", "SANDBOX_OPENAI_DELAY_MS")})
        results = {}
        with tempfile.TemporaryDirectory() as recovery:
            prefix = f"bench{uuid.uuid4().hex[:6]}."
            ensure_topics(base.kafka_bootstrap, prefix)
            env = {**channel_env, "TOPIC_PREFIX": prefix, "RECOVERY_DIR": recovery,
                   "FLOW_WORKERS": str(args.workers)}
            results["bytewax flow"] = run_flow(env, base.kafka_bootstrap, prefix,
                                               messages(args.messages, args.customers, "flow"),
                                               args.rate, db, "flow", args.processes)
        naive_n = args.naive_messages or min(args.messages, 1000)
        prefix = f"bench{uuid.uuid4().hex[:6]}."
        ensure_topics(base.kafka_bootstrap, prefix)
        results["naive consumer"] = run_naive(settings, prefix,
                                              messages(naive_n, args.customers, "naive"),
                                              args.rate, db, "naive")
        load = os.getloadavg()
        print(f"support flow benchmark: {args.messages} messages ({naive_n} naive), {args.customers} "
              f"customers, produced at {args.rate or 'max'}/s, {agent} agent, processes={args.processes}, "
              f"workers={args.workers}, cpus={os.cpu_count()}, load average {load[0]:.1f}")
        print(f"{'':16}{'msgs/s':>9}{'p50 ms':>10}{'p95 ms':>10}{'max ms':>10}  outcomes")
        for label, r in results.items():
            print(f"{label:16}{r['rate']:9.1f}{r['p50']:10.0f}{r['p95']:10.0f}{r['max']:10.0f}  "
                  f"{dict(sorted(r['outcomes'].items()))}")
        flow, naive = results["bytewax flow"], results["naive consumer"]
        print(json.dumps({"flow_msgs_s": round(flow["rate"], 1), "naive_msgs_s": round(naive["rate"], 1),
                          "ratio": round(flow["rate"] / naive["rate"], 1),
                          "flow_p50_ms": round(flow["p50"]), "flow_p95_ms": round(flow["p95"]),
                          "flow_handled_msgs_s": round(flow["handled_rate"], 1),
                          "flow_handled_p95_ms": round(flow["handled_p95"]),
                          "processes": args.processes, "workers": args.workers, "agent": agent,
                          "load_avg": round(load[0], 1)}))
    finally:
        for proc in services:
            stop(proc)
        from schema.db import close_pools

        close_pools()
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
