"""Metrics flow figures: pure aggregation speed, store write cost, end-to-end throughput.

    python -m loadtests.metrics_bench [--events 20000]

Uses the stack from the environment (FTE_* ports or DATABASE_URL/KAFKA_BOOTSTRAP_SERVERS),
a scratch database and a scratch topic prefix, both removed afterwards. Prints figures;
asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg

from flows.metric_windows import Contribution, InboundSeen, WindowUpdate, facts_for, summarize
from fte.kafka import ensure_topics, idempotent_producer
from fte.settings import Settings
from schema.events import Channel, SupportEvent, SupportEventKind
from schema.migrate import migrate
from schema.topics import SUPPORT_EVENTS, topic_name
from sinks.metrics_store import write_windows

REPO = Path(__file__).resolve().parent.parent
CHANNELS = list(Channel)


def synthetic_events(n_messages: int, start: datetime, span: timedelta) -> list[SupportEvent]:
    """received + replied + sent per message (every 4th escalated instead of answered)."""
    rnd = random.Random(7)
    events = []
    for i in range(n_messages):
        ch = CHANNELS[i % 3]
        key = f"{ch.value}:bench-{i}"
        at = start + span * (i / n_messages)
        events.append(SupportEvent(kind=SupportEventKind.RECEIVED, channel=ch, inbound_key=key, occurred_at=at,
                                   received_at=at, customer_id=i, sentiment=rnd.uniform(-1, 1)))
        done = at + timedelta(milliseconds=rnd.randint(300, 4000))
        if i % 4 == 3:
            events.append(SupportEvent(kind=SupportEventKind.ESCALATED, channel=ch, inbound_key=key,
                                       occurred_at=done, customer_id=i, reason="refund"))
        else:
            events.append(SupportEvent(kind=SupportEventKind.REPLIED, channel=ch, inbound_key=key,
                                       occurred_at=done, received_at=at, customer_id=i, reply_kind="agent",
                                       agent_tokens=120, kb_hit=rnd.random() < 0.7))
            events.append(SupportEvent(kind=SupportEventKind.SENT, channel=ch, inbound_key=key,
                                       occurred_at=done + timedelta(milliseconds=200), received_at=at,
                                       customer_id=i, reply_kind="agent"))
    return events


def bench_pure(events: list[SupportEvent]) -> None:
    started = time.perf_counter()
    seen: dict[str, InboundSeen] = {}
    contents: dict[tuple, dict] = {}
    for e in events:
        seen[e.inbound_key], facts = facts_for(seen.get(e.inbound_key, InboundSeen()), e)
        for f in facts:
            contents.setdefault((f.channel, f.occurred_at.replace(second=0, microsecond=0)), {})[f.key] = f.contribution
    for (ch, start), c in contents.items():
        summarize(ch, start, c)
    elapsed = time.perf_counter() - started
    print(f"pure: {len(events)} events -> {len(contents)} windows in {elapsed * 1000:.0f} ms "
          f"({len(events) / elapsed:,.0f} events/s)")


def bench_store(database_url: str) -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    with psycopg.connect(database_url) as conn:
        for per_window in (100, 1000, 5000):
            updates = [WindowUpdate(ch, start + timedelta(minutes=m),
                                    {f"received:{ch.value}:{m}:{i}": Contribution("received", sentiment=0.1)
                                     for i in range(per_window)}, closed=True)
                       for ch in CHANNELS for m in range(10)]
            started = time.perf_counter()
            with conn.transaction():
                write_windows(conn, updates)
            closed_ms = (time.perf_counter() - started) * 1000
            late = [WindowUpdate(ch, start + timedelta(minutes=m),
                                 {f"received:late:{m}": Contribution("received")}, closed=False)
                    for ch in CHANNELS for m in range(10)]
            started = time.perf_counter()
            with conn.transaction():
                write_windows(conn, late)
            late_ms = (time.perf_counter() - started) * 1000
            print(f"store: 30 closed windows x {per_window} events: {closed_ms:.0f} ms; "
                  f"30 late facts into them: {late_ms:.0f} ms")
            conn.execute("DELETE FROM metric_windows")
            conn.commit()


def bench_flow(settings: Settings, database_url: str, events: list[SupportEvent], recovery: bool = True) -> None:
    prefix = f"bench{uuid.uuid4().hex[:6]}."
    ensure_topics(settings.kafka_bootstrap, prefix)
    topic = topic_name(SUPPORT_EVENTS, prefix)
    producer = idempotent_producer(settings.kafka_bootstrap, **{"linger.ms": 20})
    for e in events:
        producer.produce(topic, value=e.to_bytes(), key=str(e.customer_id).encode())
        producer.poll(0)
    producer.flush(60)
    # every event of the backlog shows in some count (received, replied, escalated, sent)
    expected = len(events)
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "DATABASE_URL": database_url, "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap,
               "TOPIC_PREFIX": prefix, "LOG_LEVEL": "WARNING"}
        started = time.perf_counter()
        argv = ["--recovery-dir", tmp] if recovery else ["--no-recovery"]
        proc = subprocess.Popen([sys.executable, "-m", "fte.cli", "metrics-flow", *argv],
                                cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            counted = 0
            with psycopg.connect(database_url, autocommit=True) as conn:
                while time.perf_counter() - started < 300:
                    counted = conn.execute("SELECT coalesce(sum(received + replied + escalated + sent), 0) "
                                           "FROM metric_windows").fetchone()[0]
                    if counted >= expected:
                        break
                    time.sleep(0.2)
            elapsed = time.perf_counter() - started
            print(f"flow: backlog of {len(events)} events counted in {elapsed:.1f} s incl. start-up "
                  f"({len(events) / elapsed:,.0f} events/s), counted {counted}/{expected}")
            # live: one event now; its window appears after the minute ends + lateness
            live = SupportEvent(kind=SupportEventKind.RECEIVED, channel=Channel.WEB, inbound_key="web:live",
                                occurred_at=datetime.now(UTC))
            producer.produce(topic, value=live.to_bytes(), key=b"live")
            producer.flush(10)
            window_end = live.occurred_at.replace(second=0, microsecond=0) + timedelta(minutes=1)
            with psycopg.connect(database_url, autocommit=True) as conn:
                while True:
                    row = conn.execute("SELECT updated_at FROM metric_windows WHERE channel = 'web' AND "
                                       "window_start = %s AND received = 1", (window_end - timedelta(minutes=1),)).fetchone()
                    if row or datetime.now(UTC) > window_end + timedelta(seconds=60):
                        break
                    time.sleep(0.1)
            if row:
                print(f"flow: live event at {live.occurred_at.time()}, its window written "
                      f"{(row[0] - window_end).total_seconds():.1f} s after it ended at {window_end.time()} "
                      f"(allowed lateness {settings.METRICS_ALLOWED_LATENESS_S:.0f} s)")
        finally:
            proc.send_signal(2)
            proc.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=20000, help="messages (about 2.75 events each)")
    parser.add_argument("--no-recovery", action="store_true", help="run the flow without snapshots")
    args = parser.parse_args()
    settings = Settings()
    name = f"bench_metrics_{uuid.uuid4().hex[:6]}"
    admin = urlunsplit(urlsplit(settings.database_url)._replace(path="/postgres"))
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    database_url = urlunsplit(urlsplit(settings.database_url)._replace(path=f"/{name}"))
    try:
        migrate(database_url)
        events = synthetic_events(args.events, datetime.now(UTC) - timedelta(hours=1), timedelta(minutes=10))
        bench_pure(events)
        bench_store(database_url)
        bench_flow(settings, database_url, events, recovery=not args.no_recovery)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
