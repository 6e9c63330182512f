"""Routing cost per message (a benchmark that prints, not a timed test).

    python -m loadtests.routing_bench [--n 2000]

Prints the learned route's cost per message routed in flow-sized batches and one at a time,
plus the in-process KB index search per message, with the installed model
(`fte model train`) and the demo knowledge base of the configured database. Also prints the
process CPU time next to wall time: on a busy shared machine wall time overstates the cost.
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

from fte.settings import REPO_ROOT, get_settings


def timed(fn) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=256)
    args = parser.parse_args()
    from flows.embeddings import build_embedder
    from flows.knowledge import KnowledgeBase
    from flows.routing import load_router

    settings = get_settings()
    router = load_router(settings)
    if router is None:
        raise SystemExit("no routing model: run `fte model train` first")
    path = REPO_ROOT.parent / "shared" / "data" / "bitext" / "bitext_dev.csv"
    with open(Path(path), newline="", encoding="utf-8") as fh:
        texts = [row["instruction"] for row in csv.DictReader(fh)][:args.n]
    texts = [f"{t} #{i}" for i, t in enumerate(texts)]  # distinct: no cache hits

    def batched():
        for k in range(0, len(texts), args.batch):
            router.route_many(texts[k:k + args.batch])

    router.route_many(["warm up"])  # the flow loads the model and its sentence vectors at start
    single_texts = [t + " (single)" for t in texts[:200]]
    wall_b, cpu_b = timed(batched)
    wall_s, cpu_s = timed(lambda: [router.route(t) for t in single_texts])
    kb = KnowledgeBase(settings.database_url, build_embedder(settings))
    kb.index()  # load once, as the flow does at its first batch
    wall_k, cpu_k = timed(lambda: [kb.search_many(texts[k:k + args.batch], k=5)
                                   for k in range(0, len(texts), args.batch)])
    n = len(texts)
    print(f"model {router.version}: routing in batches of {args.batch}: "
          f"{1000 * wall_b / n:.3f} ms/message wall, {1000 * cpu_b / n:.3f} ms CPU")
    print(f"routing one message at a time: {1000 * wall_s / len(single_texts):.3f} ms/message wall, "
          f"{1000 * cpu_s / len(single_texts):.3f} ms CPU")
    print(f"in-process KB search in batches of {args.batch}: {1000 * wall_k / n:.3f} ms/message wall, "
          f"{1000 * cpu_k / n:.3f} ms CPU")


if __name__ == "__main__":
    main()
