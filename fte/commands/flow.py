"""`fte flow`: run the support dataflow with Bytewax recovery.

Recovery partitions live in RECOVERY_DIR/support; a snapshot (Kafka offsets +
identity/sentiment state) is taken every RECOVERY_SNAPSHOT_S seconds, so a restart re-reads
at most that much input — which the handler recognises as already handled. Workers:
FLOW_WORKERS (topic partition counts are multiples of 4, so use 1, 2 or 4).
"""

from __future__ import annotations

from fte.dataflow_runner import add_run_arguments, run_dataflow


def register(subparsers) -> None:
    p = subparsers.add_parser("flow", help="run the support dataflow (identity, policy, agent, replies)")
    add_run_arguments(p, "support")
    p.add_argument("--processes", type=int, default=1,
                   help="run a Bytewax cluster of this many processes on loopback (fte/flow_cluster.py)")
    p.set_defaults(func=run)


def run(args, settings) -> int:
    from flows.support import build_kafka_flow
    from fte.kafka import ensure_topics
    from schema.topics import DEADLETTER, ESCALATIONS, INBOUND_BY_CHANNEL, SUPPORT_EVENTS

    ensure_topics(settings.kafka_bootstrap, settings.TOPIC_PREFIX,
                  [*INBOUND_BY_CHANNEL.values(), SUPPORT_EVENTS, ESCALATIONS, DEADLETTER])
    if args.processes > 1:
        from fte.flow_cluster import run_cluster

        return run_cluster(settings, processes=args.processes, workers=args.workers or settings.FLOW_WORKERS,
                           recovery_root=args.recovery_dir or settings.recovery_dir / "support-cluster")
    from fte.flow_health import instrument_flow

    flow = instrument_flow(build_kafka_flow(settings), "support-flow", settings,
                           args.recovery_dir or settings.recovery_dir / "support")
    return run_dataflow(flow, name="support", args=args, settings=settings)
