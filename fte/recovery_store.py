"""A dataflow's recovery store: one owner at a time, and a rebuild when it cannot resume.

Two processes writing the same Bytewax recovery partitions corrupt them (each writes its own
epochs; after one stops, the other cannot resume: InconsistentPartitionsError). So a flow
holds an exclusive `flock` on `<store>/.lock` for as long as it runs; the kernel releases it
when the process ends, however it ends (kill -9 included), so a restart never finds a stale
lock. The lock file names the holder's pid for the refusal message.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

LOCK_NAME = ".lock"
FLOW_NAMES = {"support": "fte flow", "metrics": "fte metrics-flow"}


class StoreInUse(RuntimeError):
    """Another process holds the store."""


class StoreLock:
    """Exclusive, non-blocking lock on a recovery store directory (held until `release`)."""

    def __init__(self, directory: Path):
        self.directory = directory
        self._fd: int | None = None

    def acquire(self) -> StoreLock:
        self.directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.directory / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise StoreInUse(f"recovery store {self.directory} is in use by another process "
                             f"(pid {holder}); one flow instance per store: stop that one first, "
                             f"or give this one its own --recovery-dir") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None

    def __enter__(self) -> StoreLock:
        return self.acquire()

    def __exit__(self, *_exc) -> None:
        self.release()


def init_store(directory: Path, partitions: int = 1) -> Path:
    """Create the store's partitions once; later runs resume from them."""
    from bytewax.recovery import init_db_dir

    directory.mkdir(parents=True, exist_ok=True)
    if not any(directory.glob("part-*.sqlite3")):
        init_db_dir(directory, partitions)
    return directory


def reset_store(directory: Path) -> int:
    """Replace the store with an empty one (under its lock); returns the partitions removed.

    The next start has no snapshot, so every input partition is read from the topic's start
    and every stateful step starts empty: safe because every sink is idempotent (the support
    handler skips inbound messages already handled, windows merge by contribution key, SLA
    outcomes and alerts are unique rows).
    """
    with StoreLock(directory):
        parts = sorted(directory.glob("part-*.sqlite3*"))
        count = len([p for p in parts if p.name.endswith(".sqlite3")])
        for path in parts:
            path.unlink()
        init_store(directory, max(1, count))
    return count


def unresumable(exc: BaseException) -> bool:
    """Bytewax refused the store itself (not the dataflow): only a rebuild helps."""
    from bytewax.recovery import (
        InconsistentPartitionsError,
        MissingPartitionsError,
        NoPartitionsError,
    )

    return any(isinstance(e, InconsistentPartitionsError | MissingPartitionsError | NoPartitionsError)
               for e in exception_chain(exc))


def exception_chain(exc: BaseException) -> list[BaseException]:
    """`exc` and everything it was raised from or while handling (Bytewax wraps Python errors)."""
    chain: list[BaseException] = []
    seen: BaseException | None = exc
    while seen is not None and seen not in chain:
        chain.append(seen)
        seen = seen.__cause__ or seen.__context__
    return chain


def interrupted(exc: BaseException) -> bool:
    """A stop that was asked for (Ctrl-C, SIGTERM), however deep a library wrapped it."""
    return any(isinstance(e, KeyboardInterrupt) for e in exception_chain(exc))
