"""Where the support flow's time goes, per stage, without Kafka: N messages (the benchmark's
mix) resolved, then load_context / decide / persist on batches of `--batch`, under cProfile.

    python -m loadtests.profile_flow [--messages 2000] [--batch 500] [--top 25]

Prints µs per message for each stage and the profile's top lines (cumulative time). Uses a
scratch database (demo KB loaded), removed afterwards.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import time
import uuid
from urllib.parse import urlsplit, urlunsplit

import psycopg

from fte.settings import Settings
from loadtests.bench_flow import REPO, messages
from schema.migrate import migrate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--messages", type=int, default=2000)
    ap.add_argument("--customers", type=int, default=300)
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--top", type=int, default=25)
    args = ap.parse_args()
    base = Settings()
    parts = urlsplit(base.database_url)
    name = f"prof_{uuid.uuid4().hex[:8]}"
    admin = urlunsplit(parts._replace(path="/postgres"))
    db = urlunsplit(parts._replace(path=f"/{name}"))
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        migrate(db)
        from flows.agent import build_agent
        from flows.embeddings import HashingEmbedder
        from flows.knowledge import load_directory
        from flows.policy import load_policy
        from flows.sentiment import Trend, score
        from flows.support import identity_resolver
        from flows.support_steps import Inbound, Work
        from schema.db import close_pools, connect
        from schema.identity import normalize
        from sinks.support_store import SupportStages

        with connect(db) as conn, conn.transaction():
            load_directory(conn, REPO / "flows" / "kb_demo", embedder=HashingEmbedder())
        settings = Settings(DATABASE_URL=db, OPENAI_API_KEY="")
        stages = SupportStages(db, build_agent(settings), load_policy(settings.ESCALATION_POLICY_FILE))
        resolve = identity_resolver(settings)
        msgs = messages(args.messages, args.customers, "prof")
        t0 = time.perf_counter()
        work, cache, trends = [], {}, {}
        for i, m in enumerate(msgs):
            item = Inbound(m, tuple(normalize(s) for s in m.sender), "p.channel.x.inbound", 0, i)
            cid = cache.get(item.key) or cache.setdefault(item.key, resolve(item))
            s = score(m.body)
            trends[cid] = trends.get(cid, Trend()).update(s)
            work.append(Work(item, cid, s, trends[cid]))
        identity_s = time.perf_counter() - t0
        spent = {"load_context": 0.0, "decide": 0.0, "persist": 0.0}
        prof = cProfile.Profile()
        prof.enable()
        for k in range(0, len(work), args.batch):
            batch = work[k:k + args.batch]
            t = time.perf_counter()
            ctx = stages.load(batch)
            spent["load_context"] += time.perf_counter() - t
            t = time.perf_counter()
            plan = stages.decide(ctx)
            spent["decide"] += time.perf_counter() - t
            t = time.perf_counter()
            stages.persist(plan)
            spent["persist"] += time.perf_counter() - t
        prof.disable()
        n = len(work)
        total = sum(spent.values())
        print(f"{n} messages, batches of {args.batch}, load average {os.getloadavg()[0]:.1f}")
        print(f"identity+sentiment (cache misses only hit Postgres): {identity_s / n * 1e6:.0f} µs/msg")
        for stage, s in spent.items():
            print(f"{stage:14}{s / n * 1e6:8.0f} µs/msg")
        print(f"{'stages':14}{total / n * 1e6:8.0f} µs/msg = {n / total:.0f} msgs/s (one process, profiled)")
        out = io.StringIO()
        pstats.Stats(prof, stream=out).sort_stats("cumulative").print_stats(args.top)
        print(out.getvalue())
        close_pools()
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
