"""Notification latency: an urgent escalation published -> the Slack-compatible webhook called.

Runs `fte notify` against the configured stack (DATABASE_URL / embedded stack, migrated) on a
fresh topic prefix, with a local webhook server, publishes N urgent escalations one at a
time and prints p50/p95/max of publish-to-webhook time.

    .venv/bin/python -m loadtests.bench_notify --events 20
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx

from fte.kafka import ensure_topics, idempotent_producer, produce_sync
from fte.settings import get_settings
from loadtests.stats import percentile
from schema.events import Channel, Escalation, EscalationReason
from schema.migrate import migrate
from schema.topics import ALERTS, ESCALATIONS, topic_name

received: dict[int, float] = {}


class Hook(BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802 -- http.server's name
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        escalation_id = int(body["text"].split("escalation ", 1)[1].split(" ", 1)[0])
        received.setdefault(escalation_id, time.monotonic())
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args):
        pass


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20)
    args = parser.parse_args()
    settings = get_settings()
    migrate(settings.database_url)
    prefix = f"bench{uuid.uuid4().hex[:8]}."
    ensure_topics(settings.kafka_bootstrap, prefix, [ESCALATIONS, ALERTS])
    server = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    metrics_port = 39000 + os.getpid() % 1000
    env = {**os.environ, "TOPIC_PREFIX": prefix, "METRICS_PORT": str(metrics_port),
           "NOTIFY_SLACK_WEBHOOK_URL": f"http://127.0.0.1:{port}/hook", "NOTIFY_EMAIL_TO": "lead@example.com"}
    proc = subprocess.Popen([sys.executable, "-m", "fte.cli", "notify"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{metrics_port}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        producer = idempotent_producer(settings.kafka_bootstrap)
        topic = topic_name(ESCALATIONS, prefix)
        sent: dict[int, float] = {}
        base = int(uuid.uuid4().int % 10**8) * 100
        for i in range(args.events):
            eid = base + i
            event = Escalation(escalation_id=eid, customer_id=1, channel=Channel.WEB,
                               reason=EscalationReason.HUMAN_REQUESTED, inbound_key=f"bench-{eid}",
                               priority="urgent", created_at=datetime.now(UTC))
            sent[eid] = time.monotonic()
            produce_sync(producer, topic, event.to_bytes(), key=b"bench")
            time.sleep(0.5)
        deadline = time.monotonic() + 60
        while len(received) < len(sent) and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        proc.terminate()
        proc.wait(30)
        server.shutdown()
    latencies = sorted(received[e] - sent[e] for e in sent if e in received)
    if len(latencies) < len(sent):
        print(f"missing {len(sent) - len(latencies)} of {len(sent)} notifications")
        return 1
    p95 = percentile(latencies, 0.95)
    print(f"urgent escalation -> webhook: n={len(latencies)} p50={percentile(latencies, 0.5):.3f}s "
          f"p95={p95:.3f}s max={latencies[-1]:.3f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
