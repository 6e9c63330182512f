"""`fte metrics-flow`: run the metrics dataflow (windows, SLA timers, alerts) with recovery."""

from __future__ import annotations

import signal
from datetime import timedelta
from pathlib import Path

from fte.logs import get_logger

log = get_logger(__name__)


def register(subparsers) -> None:
    p = subparsers.add_parser("metrics-flow", help="run the metrics dataflow (windows, SLA timers, alerts)")
    p.add_argument("--workers", type=int, default=None, help="worker threads (default FLOW_WORKERS)")
    p.add_argument("--recovery-dir", type=Path, default=None,
                   help="recovery partitions (default RECOVERY_DIR/metrics)")
    p.add_argument("--no-recovery", action="store_true", help="run without state snapshots")
    p.set_defaults(func=run)


def prepare_recovery(directory: Path) -> Path:
    """Create the recovery store once; later runs resume from it."""
    from bytewax.recovery import init_db_dir

    if not any(directory.glob("part-*.sqlite3")):
        directory.mkdir(parents=True, exist_ok=True)
        init_db_dir(directory, 1)
    return directory


def run(args, settings) -> int:
    from bytewax._bytewax import cli_main
    from bytewax.recovery import RecoveryConfig

    from flows.metrics import build_kafka_flow
    from flows.sla import load_sla_config
    from fte.kafka import ensure_topics
    from schema.topics import ALERTS, DEADLETTER, SUPPORT_EVENTS

    ensure_topics(settings.kafka_bootstrap, settings.TOPIC_PREFIX, [SUPPORT_EVENTS, ALERTS, DEADLETTER])
    config = load_sla_config(settings.SLA_CONFIG_FILE)
    flow = build_kafka_flow(settings, config)
    recovery = None
    if not args.no_recovery:
        directory = prepare_recovery(args.recovery_dir or settings.recovery_dir / "metrics")
        recovery = RecoveryConfig(str(directory),
                                  backup_interval=timedelta(seconds=settings.RECOVERY_BACKUP_S))
    workers = args.workers or settings.FLOW_WORKERS
    log.info("metrics_flow.start", workers=workers, recovery=recovery is not None,
             topic_prefix=settings.TOPIC_PREFIX)
    # SIGTERM (the supervisor, Kubernetes) stops like Ctrl-C; recovery resumes either way.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        cli_main(flow, workers_per_process=workers,
                 epoch_interval=timedelta(seconds=settings.RECOVERY_SNAPSHOT_S),
                 recovery_config=recovery)
    except KeyboardInterrupt:
        pass
    except Exception as exc:
        if not isinstance(exc.__cause__, KeyboardInterrupt):
            raise
    log.info("metrics_flow.stopped")
    return 0
