"""Running a Bytewax dataflow as an `fte` service: flags, recovery store, clean stop.

Shared by `fte flow` and `fte metrics-flow`. Recovery partitions live in
RECOVERY_DIR/<name> (created with one partition on the first run); a snapshot is taken
every RECOVERY_SNAPSHOT_S seconds, so a restart re-reads at most that much input.
"""

from __future__ import annotations

import signal
from datetime import timedelta
from pathlib import Path

from fte.logs import get_logger

log = get_logger(__name__)


def add_run_arguments(parser, name: str) -> None:
    parser.add_argument("--workers", type=int, default=None, help="worker threads (default FLOW_WORKERS)")
    parser.add_argument("--recovery-dir", type=Path, default=None,
                        help=f"recovery partitions (default RECOVERY_DIR/{name})")
    parser.add_argument("--no-recovery", action="store_true", help="run without state snapshots")


def prepare_recovery(directory: Path) -> Path:
    """Create the recovery store once; later runs resume from it."""
    from bytewax.recovery import init_db_dir

    if not any(directory.glob("part-*.sqlite3")):
        directory.mkdir(parents=True, exist_ok=True)
        init_db_dir(directory, 1)
    return directory


def run_dataflow(flow, *, name: str, args, settings) -> int:
    """Run `flow` in this process until SIGINT/SIGTERM; recovery on unless --no-recovery."""
    from bytewax._bytewax import cli_main
    from bytewax.recovery import RecoveryConfig

    recovery = None
    if not args.no_recovery:
        directory = prepare_recovery(args.recovery_dir or settings.recovery_dir / name)
        recovery = RecoveryConfig(str(directory),
                                  backup_interval=timedelta(seconds=settings.RECOVERY_BACKUP_S))
    workers = args.workers or settings.FLOW_WORKERS
    log.info(f"{name}_flow.start", workers=workers, recovery=recovery is not None,
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
    log.info(f"{name}_flow.stopped")
    return 0
