"""Metrics flow soak: CPU time and memory per interval under steady live event traffic.

    python -m loadtests.metrics_soak [--rate 20] [--minutes 6] [--interval 30]

Runs `fte metrics-flow` on a scratch database and topic prefix of the stack in the
environment and produces, at a steady rate, live support events for new inbound messages
(received + ticket_opened + replied + sent, as the support flow and the dispatcher do).
Every interval it prints the flow process's CPU seconds, CPU per event and RSS; the last
line is JSON. A flow whose cost grows with uptime shows a rising `cpu_ms_per_event`.
Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psutil
import psycopg

from fte.kafka import ensure_topics, idempotent_producer
from fte.settings import Settings
from schema.events import Channel, SupportEvent, SupportEventKind
from schema.migrate import migrate
from schema.topics import SUPPORT_EVENTS, topic_name

REPO = Path(__file__).resolve().parent.parent
CHANNELS = list(Channel)


def message_events(i: int, now: datetime) -> list[SupportEvent]:
    """The events one answered inbound message produces, stamped now."""
    ch = CHANNELS[i % 3]
    key = f"{ch.value}:soak-{i}"
    ticket = f"T-soak-{i}"
    common = {"channel": ch, "inbound_key": key, "customer_id": i, "ticket_id": ticket}
    return [
        SupportEvent(kind=SupportEventKind.RECEIVED, occurred_at=now, received_at=now, sentiment=0.1, **common),
        SupportEvent(kind=SupportEventKind.TICKET_OPENED, occurred_at=now, **common),
        SupportEvent(kind=SupportEventKind.REPLIED, occurred_at=now, received_at=now, reply_kind="agent",
                     agent_tokens=100, kb_hit=True, **common),
        SupportEvent(kind=SupportEventKind.SENT, occurred_at=now, received_at=now, reply_kind="agent", **common),
    ]


class Producer(threading.Thread):
    """Produces `rate` messages' events a second until stopped; counts events."""

    def __init__(self, bootstrap: str, topic: str, rate: float):
        super().__init__(name="soak-producer", daemon=True)
        self.producer = idempotent_producer(bootstrap)
        self.topic, self.rate = topic, rate
        self.events = 0
        self.stop = threading.Event()

    def run(self) -> None:
        started, i = time.monotonic(), 0
        while not self.stop.is_set():
            for e in message_events(i, datetime.now(UTC)):
                self.producer.produce(self.topic, value=e.to_bytes(), key=str(e.customer_id).encode())
                self.events += 1
            self.producer.poll(0)
            i += 1
            time.sleep(max(0.0, started + i / self.rate - time.monotonic()))
        self.producer.flush(30)


def cpu_seconds(proc: psutil.Process) -> float:
    t = proc.cpu_times()
    return t.user + t.system


def soak(settings: Settings, database_url: str, rate: float, minutes: float, interval: float) -> dict:
    prefix = f"soak{uuid.uuid4().hex[:6]}."
    ensure_topics(settings.kafka_bootstrap, prefix)
    producer = Producer(settings.kafka_bootstrap, topic_name(SUPPORT_EVENTS, prefix), rate)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "DATABASE_URL": database_url, "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap,
               "TOPIC_PREFIX": prefix, "LOG_LEVEL": "WARNING"}
        log = Path(tmp) / "flow.log"
        flow = subprocess.Popen([sys.executable, "-m", "fte.cli", "metrics-flow", "--recovery-dir",
                                 str(Path(tmp) / "store")], cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                                stderr=log.open("wb"))
        proc = psutil.Process(flow.pid)
        try:
            time.sleep(8)  # start-up (imports, recovery store) is not what is measured
            producer.start()
            end = time.monotonic() + minutes * 60
            last_cpu, last_events, t0 = cpu_seconds(proc), producer.events, time.monotonic()
            while time.monotonic() < end and flow.poll() is None:
                time.sleep(interval)
                cpu, events = cpu_seconds(proc), producer.events
                row = {"minute": round((time.monotonic() - t0) / 60, 1), "cpu_s": round(cpu - last_cpu, 2),
                       "events": events - last_events,
                       "cpu_ms_per_event": round((cpu - last_cpu) * 1000 / max(1, events - last_events), 3),
                       "rss_mb": round(proc.memory_info().rss / 2**20, 1)}
                rows.append(row)
                print(f"  t={row['minute']:5.1f} min  cpu {row['cpu_s']:6.2f} s / {interval:.0f} s  "
                      f"events {row['events']:6d}  cpu/event {row['cpu_ms_per_event']:.3f} ms  "
                      f"rss {row['rss_mb']} MB", flush=True)
                last_cpu, last_events = cpu, events
        finally:
            producer.stop.set()
            flow.send_signal(2)
            try:
                flow.wait(30)
            except subprocess.TimeoutExpired:
                flow.kill()
            if flow.returncode not in (0, None):
                print(f"  metrics flow exited with {flow.returncode}:\n{log.read_text(errors='replace')[-3000:]}",
                      flush=True)
    third = max(1, len(rows) // 3)
    first = sum(r["cpu_ms_per_event"] for r in rows[:third]) / third if rows else 0.0
    last = sum(r["cpu_ms_per_event"] for r in rows[-third:]) / third if rows else 0.0
    return {"rate": rate, "minutes": minutes, "intervals": len(rows),
            "cpu_ms_per_event_first_third": round(first, 3), "cpu_ms_per_event_last_third": round(last, 3),
            "growth": round(last / first, 2) if first else None,
            "rss_mb_start": rows[0]["rss_mb"] if rows else None, "rss_mb_end": rows[-1]["rss_mb"] if rows else None}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=20.0, help="inbound messages a second (4 events each)")
    parser.add_argument("--minutes", type=float, default=6.0)
    parser.add_argument("--interval", type=float, default=30.0, help="seconds per CPU sample")
    args = parser.parse_args(argv)
    settings = Settings()
    name = f"soak_metrics_{uuid.uuid4().hex[:6]}"
    admin = urlunsplit(urlsplit(settings.database_url)._replace(path="/postgres"))
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    database_url = urlunsplit(urlsplit(settings.database_url)._replace(path=f"/{name}"))
    try:
        migrate(database_url)
        print(f"metrics flow soak: {args.rate}/s messages ({args.rate * 4:.0f} events/s) for "
              f"{args.minutes} min, cpu sampled every {args.interval:.0f} s", flush=True)
        summary = soak(settings, database_url, args.rate, args.minutes, args.interval)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
