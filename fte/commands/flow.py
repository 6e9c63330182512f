"""`fte flow`: run the support dataflow with Bytewax recovery.

Recovery partitions live in RECOVERY_DIR/support (created with one partition on the first
run); a snapshot (Kafka offsets + identity/sentiment state) is taken every
RECOVERY_SNAPSHOT_S seconds, so a restart re-reads at most that much input — which the
handler recognises as already handled. Workers: FLOW_WORKERS (topic partition counts are
multiples of 4, so use 1, 2 or 4).
"""

from __future__ import annotations

import signal
from datetime import timedelta
from pathlib import Path

from fte.logs import get_logger

log = get_logger(__name__)


def register(subparsers) -> None:
    p = subparsers.add_parser("flow", help="run the support dataflow (identity, policy, agent, replies)")
    p.add_argument("--workers", type=int, default=None, help="worker threads (default FLOW_WORKERS)")
    p.add_argument("--recovery-dir", type=Path, default=None,
                   help="recovery partitions (default RECOVERY_DIR/support)")
    p.add_argument("--no-recovery", action="store_true", help="run without state snapshots")
    p.set_defaults(func=run)


def run(args, settings) -> int:
    from bytewax._bytewax import cli_main
    from bytewax.recovery import RecoveryConfig

    from flows.support import build_kafka_flow
    from fte.commands.metrics import prepare_recovery
    from fte.kafka import ensure_topics
    from schema.topics import DEADLETTER, ESCALATIONS, INBOUND_BY_CHANNEL, SUPPORT_EVENTS

    ensure_topics(settings.kafka_bootstrap, settings.TOPIC_PREFIX,
                  [*INBOUND_BY_CHANNEL.values(), SUPPORT_EVENTS, ESCALATIONS, DEADLETTER])
    flow = build_kafka_flow(settings)
    recovery = None
    if not args.no_recovery:
        directory = prepare_recovery(args.recovery_dir or settings.recovery_dir / "support")
        recovery = RecoveryConfig(str(directory),
                                  backup_interval=timedelta(seconds=settings.RECOVERY_BACKUP_S))
    workers = args.workers or settings.FLOW_WORKERS
    log.info("support_flow.start", workers=workers, recovery=recovery is not None,
             topic_prefix=settings.TOPIC_PREFIX)
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
    log.info("support_flow.stopped")
    return 0
