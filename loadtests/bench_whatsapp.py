"""WhatsApp intake benchmark: signed webhooks per second, latency to the durable 200 (the
Postgres inbox commit), and the relay's delay from that commit to Kafka's ack.

Starts its own ingress (`fte ingress`) on a free port with a fresh topic prefix against the
configured stack (`fte stack up` first), posts signed Twilio webhooks from N concurrent
clients, waits until the relay has published every one, and prints one summary line and a
JSON object.

  .venv/bin/python -m loadtests.bench_whatsapp --requests 2000 --concurrency 16
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
import uuid

import httpx
import psycopg
from twilio.request_validator import RequestValidator

from fte.kafka import ensure_topics
from fte.settings import Settings
from loadtests.bench_webform import REPO, free_port
from loadtests.stats import percentile
from loadtests.payloads import wait_until_healthy


async def post_all(url: str, token: str, sids: list[str], concurrency: int) -> tuple[list[float], dict]:
    validator = RequestValidator(token)
    signed_url = f"{url}/webhooks/whatsapp"
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    queue = list(sids)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as client:
        async def worker() -> None:
            while queue:
                sid = queue.pop()
                form = {"MessageSid": sid, "From": f"whatsapp:+1555{abs(hash(sid)) % 10**7:07d}",
                        "To": "whatsapp:+14155238886", "Body": "Where is my order?", "NumMedia": "0"}
                headers = {"X-Twilio-Signature": validator.compute_signature(signed_url, form)}
                started = time.perf_counter()
                response = await client.post("/webhooks/whatsapp", data=form, headers=headers)
                statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
                if response.status_code == 200:
                    latencies.append((time.perf_counter() - started) * 1000)
        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return sorted(latencies), statuses


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args(argv)
    if not 1 <= args.requests <= 100_000 or not 1 <= args.concurrency <= 512:
        parser.error("--requests 1..100000, --concurrency 1..512")
    settings = Settings()
    prefix = f"benchwa{uuid.uuid4().hex[:8]}."
    ensure_topics(settings.kafka_bootstrap, prefix)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "TOPIC_PREFIX": prefix, "INGRESS_HOST": "127.0.0.1", "INGRESS_PORT": str(port),
           "PUBLIC_BASE_URL": url, "LOG_LEVEL": "WARNING", "WHATSAPP_RELAY_POLL_S": "0.2"}
    server = subprocess.Popen([sys.executable, "-m", "fte.cli", "ingress"], env=env, cwd=REPO)
    run = uuid.uuid4().hex[:8]
    sids = [f"SMbench{run}{i:06d}" for i in range(args.requests)]
    try:
        wait_until_healthy(url, alive=lambda: server.poll() is None)
        started = time.perf_counter()
        latencies, statuses = asyncio.run(post_all(url, settings.TWILIO_AUTH_TOKEN.get_secret_value(),
                                                   sids, args.concurrency))
        wall = time.perf_counter() - started
        with psycopg.connect(settings.database_url) as conn:
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline:
                pending = conn.execute("SELECT count(*) FROM whatsapp_inbox WHERE message_sid LIKE %s "
                                       "AND relayed_at IS NULL", (f"SMbench{run}%",)).fetchone()[0]
                if not pending:
                    break
                time.sleep(0.2)
            delays = sorted(r[0] for r in conn.execute(
                "SELECT extract(epoch FROM relayed_at - received_at) * 1000 FROM whatsapp_inbox "
                "WHERE message_sid LIKE %s AND relayed_at IS NOT NULL", (f"SMbench{run}%",)).fetchall())
    finally:
        server.terminate()
        server.wait(30)
    result = {"requests": args.requests, "concurrency": args.concurrency, "accepted": len(latencies),
              "statuses": statuses, "webhooks_per_s": round(len(latencies) / wall, 1),
              "p50_ms": round(percentile(latencies, 0.5), 1), "p95_ms": round(percentile(latencies, 0.95), 1),
              "relayed": len(delays), "relay_p50_ms": round(float(percentile(delays, 0.5)), 1),
              "relay_p95_ms": round(float(percentile(delays, 0.95)), 1)}
    print(f"whatsapp intake: {result['webhooks_per_s']} webhooks/s, durable 200 p50 {result['p50_ms']} ms, "
          f"p95 {result['p95_ms']} ms; inbox -> Kafka p50 {result['relay_p50_ms']} ms, p95 "
          f"{result['relay_p95_ms']} ms ({result['relayed']}/{args.requests} relayed, "
          f"{args.concurrency} concurrent clients)")
    print(json.dumps({"topic_prefix": prefix, **result}))
    return 0 if result["relayed"] == args.requests else 1


if __name__ == "__main__":
    sys.exit(main())
