"""Web-form benchmark: submissions per second and latency to Kafka ack, on this machine.

Starts its own ingress (`fte ingress`, one uvicorn process) on a free port with a fresh
topic prefix against the configured stack (embedded by default; `fte stack up` first),
then POSTs valid /support/submit requests from N concurrent clients. Each 202 means the
ticket row is committed and Kafka acknowledged the event, so the request latency is the
latency to Kafka ack. Prints one summary line and a JSON object.

  .venv/bin/python -m loadtests.bench_webform --requests 3000 --concurrency 16
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx

from fte.kafka import ensure_topics
from fte.settings import Settings
from loadtests.payloads import load_questions, wait_until_healthy, web_submission
from loadtests.stats import percentile

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def run_load(base_url: str, requests: int, concurrency: int, seed: int) -> dict:
    rng = random.Random(seed)
    questions = load_questions()
    bodies = [web_submission(rng, questions, with_phone=rng.random() < 0.3) for _ in range(requests)]
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    next_index = 0
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base_url, timeout=30, limits=limits) as client:
        async def worker() -> None:
            nonlocal next_index
            while next_index < len(bodies):
                body = bodies[next_index]
                next_index += 1
                started = time.perf_counter()
                response = await client.post("/support/submit", json=body)
                elapsed = time.perf_counter() - started
                statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
                if response.status_code == 202:
                    latencies.append(elapsed * 1000)

        for _ in range(min(50, requests)):  # warm-up: connections, pool, producer metadata
            await client.post("/support/submit", json=web_submission(rng, questions))
        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - started
    latencies.sort()
    return {
        "requests": requests, "concurrency": concurrency, "seconds": round(wall, 2),
        "accepted": len(latencies), "statuses": statuses,
        "submissions_per_s": round(len(latencies) / wall, 1),
        "p50_ms": round(percentile(latencies, 0.50), 1),
        "p95_ms": round(percentile(latencies, 0.95), 1),
        "p99_ms": round(percentile(latencies, 0.99), 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--seed", type=int, default=3)
    args = parser.parse_args(argv)
    if not 1 <= args.requests <= 100_000 or not 1 <= args.concurrency <= 512:
        parser.error("--requests 1..100000, --concurrency 1..512")

    settings = Settings()
    prefix = f"bench{uuid.uuid4().hex[:8]}."
    ensure_topics(settings.kafka_bootstrap, prefix)
    port = free_port()
    env = {**os.environ, "TOPIC_PREFIX": prefix, "INGRESS_HOST": "127.0.0.1",
           "INGRESS_PORT": str(port), "PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
           # One client address and unique senders: lift the abuse limits for the measurement.
           "RATE_LIMIT_PER_IP": "100000000/minute", "RATE_LIMIT_PER_IDENTITY": "1000/minute",
           "LOG_LEVEL": "WARNING"}
    server = subprocess.Popen([sys.executable, "-m", "fte.cli", "ingress"], env=env, cwd=REPO)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_healthy(url, alive=lambda: server.poll() is None)
        result = asyncio.run(run_load(url, args.requests, args.concurrency, args.seed))
    finally:
        server.terminate()
        server.wait(30)
    print(f"web form: {result['submissions_per_s']} submissions/s, latency to Kafka ack "
          f"p50 {result['p50_ms']} ms, p95 {result['p95_ms']} ms, p99 {result['p99_ms']} ms "
          f"({result['accepted']}/{result['requests']} accepted, {args.concurrency} concurrent clients)")
    print(json.dumps({"topic_prefix": prefix, **result}))
    return 0 if result["accepted"] == result["requests"] else 1


if __name__ == "__main__":
    sys.exit(main())
