"""Input partitions that say when they next want to be polled, so the input never spins.

Bytewax 0.21.1 (src/inputs.rs, `partitioned_input`) keeps each partition's last
`next_awake()` and, at the end of every activation, re-activates the input operator after
the earliest of them; a partition that returned None is polled again at once (after 1 ms if
its batch was empty). While the dataflow is still finishing the previous epoch (backpressure:
snapshots, sinks), it does not poll the partitions at all, so their stored times stay where
they were: once those lie in the past, the operator re-activates itself immediately, over
and over, until the epoch completes. The Kafka source always answers None, so the metrics flow
spent every epoch change in that loop (a whole core once the epochs grew slower), and 1 ms
polling when idle.

`PacedSource` wraps a partitioned source: after a full batch it asks to be polled at once
(there is a backlog); after a partial batch, `busy` later; after an empty one, `idle` later.
A stored wake-up time is then in the future for that long, which covers an ordinary epoch
change. The metrics flow is not latency critical (1-minute windows, 10 s lateness), so
100-250 ms is free.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Generic, TypeVar

from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition

X = TypeVar("X")
S = TypeVar("S")


def _utcnow() -> datetime:
    return datetime.now(UTC)


def next_poll(batch_len: int, full: int, now: datetime, inner: datetime | None,
              busy: timedelta, idle: timedelta) -> datetime | None:
    """When to poll again after a batch of `batch_len` (`full` = the partition's batch size)."""
    if inner is not None:  # the partition knows better (a timer of its own)
        return inner
    if batch_len >= full:
        return None  # a backlog: read on at once
    return now + (busy if batch_len else idle)


class PacedPartition(StatefulSourcePartition[X, S], Generic[X, S]):
    def __init__(self, inner: StatefulSourcePartition[X, S], full: int, busy: timedelta, idle: timedelta,
                 now_getter: Callable[[], datetime]):
        self._inner, self._full, self._busy, self._idle, self._now = inner, full, busy, idle, now_getter
        self._next: datetime | None = None

    def next_batch(self) -> list[X]:
        batch = list(self._inner.next_batch())
        self._next = next_poll(len(batch), self._full, self._now(), self._inner.next_awake(),
                               self._busy, self._idle)
        return batch

    def next_awake(self) -> datetime | None:
        return self._next

    def snapshot(self) -> S:
        return self._inner.snapshot()

    def close(self) -> None:
        self._inner.close()


class PacedSource(FixedPartitionedSource[X, S], Generic[X, S]):
    """`inner`'s partitions, polled again `busy`/`idle` after a partial/empty batch."""

    def __init__(self, inner: FixedPartitionedSource[X, S], *, batch_size: int,
                 busy: timedelta = timedelta(milliseconds=100), idle: timedelta = timedelta(milliseconds=250),
                 now_getter: Callable[[], datetime] = _utcnow):
        self.inner, self.batch_size, self.busy, self.idle, self.now_getter = inner, batch_size, busy, idle, now_getter

    def list_parts(self) -> list[str]:
        return self.inner.list_parts()

    def build_part(self, step_id: str, for_part: str, resume_state: Any) -> PacedPartition[X, S]:
        return PacedPartition(self.inner.build_part(step_id, for_part, resume_state), self.batch_size,
                              self.busy, self.idle, self.now_getter)
