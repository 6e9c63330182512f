"""Running a Bytewax dataflow as an `fte` service: flags, recovery store, clean stop.

Shared by `fte flow` and `fte metrics-flow`. Recovery partitions live in
RECOVERY_DIR/<name> (created with one partition on the first run); a snapshot is taken
every RECOVERY_SNAPSHOT_S seconds, so a restart re-reads at most that much input.
The process holds the store's lock while it runs (a second instance refuses to start), and
a store Bytewax cannot resume from is reported with the command that rebuilds it.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from fte.logs import get_logger
from fte.recovery_store import StoreInUse, StoreLock, init_store, interrupted, unresumable

log = get_logger(__name__)

# Exit codes the supervisor and operators can tell apart from a crash.
EXIT_STORE_IN_USE = 3
EXIT_STORE_UNRESUMABLE = 4


def add_run_arguments(parser, name: str) -> None:
    parser.add_argument("--workers", type=int, default=None, help="worker threads (default FLOW_WORKERS)")
    parser.add_argument("--recovery-dir", type=Path, default=None,
                        help=f"recovery partitions (default RECOVERY_DIR/{name})")
    parser.add_argument("--no-recovery", action="store_true", help="run without state snapshots")


def prepare_recovery(directory: Path) -> Path:
    """Create the recovery store once; later runs resume from it."""
    return init_store(directory, 1)


def run_dataflow(flow, *, name: str, args, settings) -> int:
    """Run `flow` in this process until SIGINT/SIGTERM; recovery on unless --no-recovery."""
    from bytewax._bytewax import cli_main

    directory = args.recovery_dir or settings.recovery_dir / name
    workers = args.workers or settings.FLOW_WORKERS
    log.info(f"{name}_flow.start", workers=workers, recovery=not args.no_recovery,
             topic_prefix=settings.TOPIC_PREFIX)
    return run_guarded(lambda recovery: cli_main(
        flow, workers_per_process=workers, epoch_interval=timedelta(seconds=settings.RECOVERY_SNAPSHOT_S),
        recovery_config=recovery),
        name=name, directory=None if args.no_recovery else directory, settings=settings, create=True)


def run_guarded(run: Callable[[object | None], None], *, name: str, directory: Path | None, settings,
                create: bool = False) -> int:
    """`run(recovery_config)` holding the store's lock, with the exit codes above.

    Shared by `fte flow`/`fte metrics-flow` and the Kubernetes flow pods (k8s/flow_entry.py), so
    every way of starting a flow takes the same lock. `directory` None runs without recovery;
    `create` makes the store's single partition on the first run (the pods' init container
    makes theirs). SIGINT/SIGTERM end it without a traceback.
    """
    from bytewax.recovery import RecoveryConfig

    recovery = None
    lock = None
    if directory is not None:
        try:
            lock = StoreLock(directory).acquire()
        except StoreInUse as exc:
            log.error(f"{name}_flow.store_in_use", error=str(exc))
            print(f"fte: {exc}", file=sys.stderr)
            return EXIT_STORE_IN_USE
        if create:
            prepare_recovery(directory)
        recovery = RecoveryConfig(str(directory),
                                  backup_interval=timedelta(seconds=settings.RECOVERY_BACKUP_S))
    # SIGTERM (the supervisor, Kubernetes) stops like Ctrl-C; recovery resumes either way.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        run(recovery)
    except KeyboardInterrupt:
        pass
    except Exception as exc:
        if interrupted(exc):
            pass
        elif recovery is not None and unresumable(exc):
            command = f"fte recovery reset {name}"
            if directory != settings.recovery_dir / name:  # --recovery-dir, or a pod's volume
                command += f" --recovery-dir {directory}"
            message = (f"recovery store {directory} cannot be resumed ({type(exc).__name__}: "
                       f"{str(exc).splitlines()[0] if str(exc) else ''}); rebuild it with "
                       f"`{command}` (safe: every sink is idempotent; the flow "
                       f"re-reads its input from the topic start)")
            log.error(f"{name}_flow.store_unresumable", error=message)
            print(f"fte: {message}", file=sys.stderr)
            return EXIT_STORE_UNRESUMABLE
        else:
            raise
    finally:
        if lock is not None:
            lock.release()
    log.info(f"{name}_flow.stopped")
    return 0
