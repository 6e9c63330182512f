"""`fte metrics-flow`: run the metrics dataflow (windows, SLA timers, alerts) with recovery."""

from __future__ import annotations

from fte.dataflow_runner import add_run_arguments, run_dataflow


def register(subparsers) -> None:
    p = subparsers.add_parser("metrics-flow", help="run the metrics dataflow (windows, SLA timers, alerts)")
    add_run_arguments(p, "metrics")
    p.set_defaults(func=run)


def run(args, settings) -> int:
    from flows.metrics import build_kafka_flow
    from flows.sla import load_sla_config
    from fte.kafka import ensure_topics
    from schema.topics import ALERTS, DEADLETTER, SUPPORT_EVENTS

    ensure_topics(settings.kafka_bootstrap, settings.TOPIC_PREFIX, [SUPPORT_EVENTS, ALERTS, DEADLETTER])
    from fte.flow_health import instrument_flow

    flow = instrument_flow(build_kafka_flow(settings, load_sla_config(settings.SLA_CONFIG_FILE)),
                           "metrics-flow", settings, args.recovery_dir or settings.recovery_dir / "metrics")
    return run_dataflow(flow, name="metrics", args=args, settings=settings)
