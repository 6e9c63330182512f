"""Many small keyed states held in a fixed number of Bytewax keys (buckets).

Bytewax 0.21's stateful operator keeps every key's next notification time in one map and,
on every activation, walks the whole map twice (to find due keys, then the earliest wake-up).
A state with one key per inbound message or per ticket, each with a timer (de-duplication
TTL, SLA deadline), therefore costs more CPU with every key it keeps: at steady traffic the
metrics flow got slower the longer it ran. Hashing those keys into `BUCKETS` buckets bounds
that map; each bucket holds its own small logics and wakes at the earliest of their times.

Snapshots stay proportional to the traffic: with many more buckets than messages per
snapshot interval, an epoch touches (and snapshots) only a small share of the buckets.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any, Generic, TypeVar

from bytewax.operators import StatefulLogic

V = TypeVar("V")  # item handled by an inner logic
W = TypeVar("W")  # item an inner logic emits
S = TypeVar("S")  # inner logic's snapshot

BUCKETS = 4096


def bucket_of(key: str, buckets: int = BUCKETS) -> str:
    """A stable bucket for `key` (the same across processes and restarts, unlike hash())."""
    return str(zlib.crc32(key.encode()) % buckets)


class BucketedLogic(StatefulLogic[tuple[str, V], W, dict[str, S]], Generic[V, W, S]):
    """Runs one inner `StatefulLogic` per inner key; items arrive as (inner key, value)."""

    def __init__(self, builder: Callable[[S | None], StatefulLogic[V, W, S]],
                 resume: dict[str, S] | None, now_getter: Callable[[], datetime]):
        self._builder = builder
        self._now = now_getter
        self._logics: dict[str, StatefulLogic[V, W, S]] = {}
        self._wake: dict[str, datetime] = {}
        for key, state in (resume or {}).items():
            self._add(key, builder(state))

    def _add(self, key: str, logic: StatefulLogic[V, W, S]) -> None:
        self._logics[key] = logic
        self._reschedule(key)

    def _reschedule(self, key: str) -> None:
        at = self._logics[key].notify_at()
        if at is None:
            self._wake.pop(key, None)
        else:
            self._wake[key] = at

    def _settle(self, key: str, discard: bool) -> None:
        if discard:
            del self._logics[key]
            self._wake.pop(key, None)
        else:
            self._reschedule(key)

    def on_item(self, value: tuple[str, V]) -> tuple[Iterable[W], bool]:
        key, item = value
        logic = self._logics.get(key)
        if logic is None:
            logic = self._builder(None)
            self._logics[key] = logic
        out, discard = logic.on_item(item)
        self._settle(key, discard)
        return list(out), self._empty()

    def on_notify(self) -> tuple[Iterable[W], bool]:
        now = self._now()
        out: list[Any] = []
        for key in [k for k, at in self._wake.items() if at <= now]:
            emitted, discard = self._logics[key].on_notify()
            out.extend(emitted)
            self._settle(key, discard)
        return out, self._empty()

    def on_eof(self) -> tuple[Iterable[W], bool]:
        out: list[Any] = []
        for key in list(self._logics):
            emitted, discard = self._logics[key].on_eof()
            out.extend(emitted)
            self._settle(key, discard)
        return out, self._empty()

    def notify_at(self) -> datetime | None:
        return min(self._wake.values(), default=None)

    def snapshot(self) -> dict[str, S]:
        return {key: logic.snapshot() for key, logic in self._logics.items()}

    def _empty(self) -> bool:
        return StatefulLogic.DISCARD if not self._logics else StatefulLogic.RETAIN
