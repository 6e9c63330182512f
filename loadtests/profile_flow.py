"""Where the support flow's time goes, per stage: N messages (the benchmark's mix) run through
the real dataflow in-process (`flows/support.py: build_flow` with Bytewax's TestingSource,
no Kafka) against Postgres, with the production agent, policy and routing model.

    python -m loadtests.profile_flow [--messages 2000] [--batch 500] [--top 25]

Prints, per stage (identity, load_context, decide, persist, and the rest: parse, sentiment,
rate limit, Bytewax), µs per message of wall time, of this process's CPU (every thread) and
of Postgres's CPU (all its processes), with the load average; then, on a second set of
messages, the cProfile's top lines (cumulative). CPU figures are the ones to compare on a
shared machine. Uses a scratch database (demo KB loaded), removed afterwards.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import time
import uuid
from collections import defaultdict
from datetime import timedelta
from urllib.parse import urlsplit, urlunsplit

import psutil
import psycopg

from fte.settings import Settings
from loadtests.bench_flow import REPO, messages
from schema.migrate import migrate

STAGES = ("identity", "load_context", "decide", "persist")


class Clock:
    """Wall, own-process CPU and Postgres CPU spent inside each stage. The clock's own cost
    (reading /proc) is kept out of the stages and subtracted from the rest."""

    def __init__(self, postmaster: psutil.Process):
        self.postmaster = postmaster
        self.backends: list[psutil.Process] = []
        self.spent: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0])
        self.overhead = [0.0, 0.0]

    def postgres_cpu(self, refresh: bool = False) -> float:
        w, c = time.perf_counter(), time.process_time()
        if refresh or not self.backends:
            self.backends = self.postmaster.children()
        total = 0.0
        for p in self.backends:
            try:
                t = p.cpu_times()
                total += t.user + t.system
            except psutil.NoSuchProcess:
                pass
        self.overhead[0] += time.perf_counter() - w
        self.overhead[1] += time.process_time() - c
        return total

    def now(self, refresh: bool = True) -> tuple[float, float, float]:
        pg = self.postgres_cpu(refresh)
        return time.perf_counter(), time.process_time(), pg

    def timed(self, stage: str, fn, *, refresh: bool = True):
        """`refresh`: re-list Postgres's processes first (new backends); off for a stage
        called per message, where listing them would cost more than the stage."""
        def run(*args):
            pg0 = self.postgres_cpu(refresh)
            w0, c0 = time.perf_counter(), time.process_time()
            try:
                return fn(*args)
            finally:
                w1, c1 = time.perf_counter(), time.process_time()
                pg1 = self.postgres_cpu()
                for i, d in enumerate((w1 - w0, c1 - c0, pg1 - pg0)):
                    self.spent[stage][i] += d
        return run


def kafka_messages(n: int, customers: int, tag: str) -> list:
    from bytewax.connectors.kafka import KafkaSourceMessage

    from schema.identity import identity_key, normalize

    return [KafkaSourceMessage(key=identity_key(normalize(m.sender[0])).encode(), value=m.to_bytes(),
                               topic=f"p.channel.{m.channel.value}.inbound", partition=0, offset=i)
            for i, m in enumerate(messages(n, customers, tag))]


def run_flow(stages, resolve_many, items, batch: int, wait_ms: int) -> list:
    from bytewax.testing import TestingSink, TestingSource, run_main

    from flows.support import build_flow

    dead: list = []
    # as the KafkaSource reads a backlog: up to `batch` messages per poll
    run_main(build_flow(TestingSource(items, batch_size=batch), resolve_many=resolve_many, stages=stages,
                        dead_letters_db=TestingSink(dead), batch_size=batch,
                        batch_wait=timedelta(milliseconds=wait_ms)))
    return dead


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--messages", type=int, default=2000)
    ap.add_argument("--customers", type=int, default=300)
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--wait-ms", type=int, default=50)
    ap.add_argument("--top", type=int, default=25, help="cProfile lines (0: no profiled run)")
    args = ap.parse_args()
    from fte.logs import configure_logging

    configure_logging("WARNING")
    base = Settings()
    parts = urlsplit(base.database_url)
    name = f"prof_{uuid.uuid4().hex[:8]}"
    admin = urlunsplit(parts._replace(path="/postgres"))
    db = urlunsplit(parts._replace(path=f"/{name}"))
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
        postmaster = psutil.Process(conn.execute("SELECT pg_backend_pid()").fetchone()[0]).parent()
    try:
        migrate(db)
        from types import SimpleNamespace

        from flows.agent import build_agent
        from flows.embeddings import HashingEmbedder
        from flows.knowledge import load_directory
        from flows.policy import load_policy, with_router
        from flows.routing import load_router
        from flows.sla import load_sla_config
        from flows.support import identity_batch_resolver
        from schema.db import close_pools, connect
        from sinks.support_store import SupportStages

        with connect(db) as conn, conn.transaction():
            load_directory(conn, REPO / "flows" / "kb_demo", embedder=HashingEmbedder())
        settings = Settings(DATABASE_URL=db, OPENAI_API_KEY="")
        router = load_router(settings)
        stages = SupportStages(db, build_agent(settings, router),
                               with_router(load_policy(settings.ESCALATION_POLICY_FILE), router),
                               concurrency=settings.AGENT_CONCURRENCY,
                               sla_config=load_sla_config(settings.SLA_CONFIG_FILE),
                               rate_per_s=settings.AGENT_RATE_PER_S)
        # (no agent timeout: a round's one chunk then runs in this thread, where cProfile sees it)
        resolve = identity_batch_resolver(settings)
        # warm-up: pools, KB index, routing model, first-call imports (not part of the figures)
        run_flow(stages, resolve, kafka_messages(50, 20, "warm"), args.batch, args.wait_ms)

        clock = Clock(postmaster)
        timed = SimpleNamespace(load_step=clock.timed("load_context", stages.load_step),
                                decide_step=clock.timed("decide", stages.decide_step),
                                persist_step=clock.timed("persist", stages.persist_step))
        items = kafka_messages(args.messages, args.customers, "prof")
        start = clock.now()
        clock.overhead = [0.0, 0.0]
        dead = run_flow(timed, clock.timed("identity", resolve), items, args.batch, args.wait_ms)
        end = clock.now()
        n = len(items)
        total = [end[i] - start[i] for i in range(3)]
        rest = [total[i] - sum(clock.spent[s][i] for s in STAGES) - (clock.overhead + [0.0])[i]
                for i in range(3)]
        load = os.getloadavg()[0]
        print(f"{n} messages, {args.customers} customers, batches of <= {args.batch}, "
              f"{'routing model' if router else 'no routing model'}, {len(dead)} dead letters, "
              f"load average {load:.1f}")
        print(f"{'µs/message':16}{'wall':>8}{'cpu':>8}{'pg cpu':>8}")
        for stage in (*STAGES, "other"):
            v = rest if stage == "other" else clock.spent[stage]
            print(f"{stage:16}{v[0] / n * 1e6:8.0f}{v[1] / n * 1e6:8.0f}{v[2] / n * 1e6:8.0f}")
        print(f"{'total':16}{total[0] / n * 1e6:8.0f}{total[1] / n * 1e6:8.0f}{total[2] / n * 1e6:8.0f}"
              f"   = {n / total[0]:.0f} msgs/s wall, {n / (total[1] + total[2]):.0f} msgs/s per core "
              f"(flow + Postgres CPU)")
        if args.top:
            prof = cProfile.Profile()
            items = kafka_messages(args.messages, args.customers, "cprof")
            prof.enable()
            run_flow(stages, resolve, items, args.batch, args.wait_ms)
            prof.disable()
            out = io.StringIO()
            pstats.Stats(prof, stream=out).sort_stats("cumulative").print_stats(args.top)
            print(out.getvalue())
        close_pools()
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
