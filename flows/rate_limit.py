"""Per-customer message limit (the spec's 10 a minute), as keyed state in the support flow.

The ingress runs as several replicas, each with its own memory, so a limit per customer
there is one limit per replica. Here the state is keyed by customer id after identity
resolution: one limit for the whole system. Within the limit every message is answered;
beyond it the burst is coalesced: the first message over the limit is stored and the
customer is told once to wait; the rest are held in the state (snapshotted with the
offsets) until the window reopens, then released together: all stored as `coalesced`
but the last, which is answered once, with the others in its history.

`admit` is the pure rule (message times are the ingress's `received_at`, so a replay
decides the same); `RateLimitLogic` is the thin `op.stateful` wrapper. A key's state is
dropped once it has been idle for a window (wall clock), so a flood of unique senders
holds at most one window's worth of keys.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from bytewax.operators import StatefulLogic

LIMIT = 10
WINDOW = timedelta(minutes=1)

WAIT_TEXT = ("You've sent us several messages in a short time. We have them all and will "
             "answer together - please give us a minute before writing again.")


class Verdict(str, enum.Enum):
    ANSWER = "answer"            # within the limit
    WAIT_NOTICE = "wait_notice"  # first over the limit: stored, the customer is told to wait
    COALESCE = "coalesce"        # further over the limit: stored, nothing sent


@dataclass(frozen=True)
class RateState:
    answered: tuple[datetime, ...] = ()  # times of the answered messages in the last window
    told_until: datetime | None = None   # the wait notice covers the burst until then
    held: tuple[Any, ...] = ()           # the burst after the notice, released together


def admit(state: RateState | None, at: datetime, *, limit: int = LIMIT,
          window: timedelta = WINDOW) -> tuple[RateState, Verdict]:
    state = state or RateState()
    recent = tuple(t for t in state.answered if at - t < window)
    told = state.told_until if state.told_until is not None and at < state.told_until else None
    if len(recent) < limit:
        return RateState((*recent, at), told, state.held), Verdict.ANSWER
    if told is not None:
        return RateState(recent, told, state.held), Verdict.COALESCE
    # Told once per burst: until the oldest answered message leaves the window.
    return RateState(recent, recent[0] + window, state.held), Verdict.WAIT_NOTICE


def release(state: RateState) -> tuple[RateState, list[tuple[Any, Verdict]]]:
    """The held burst: stored as coalesced, the last one answered (counted as an answer)."""
    if not state.held:
        return state, []
    out = [(item, Verdict.COALESCE) for item in state.held[:-1]] + [(state.held[-1], Verdict.ANSWER)]
    at = state.told_until or (state.answered[-1] if state.answered else None)
    answered = (*state.answered, at) if at is not None else state.answered
    return RateState(answered, None, ()), out


def on_message(state: RateState | None, item: Any, at: datetime, *, limit: int = LIMIT,
               window: timedelta = WINDOW) -> tuple[RateState, list[tuple[Any, Verdict]]]:
    """One message: what to emit now (a held burst whose window ended goes first)."""
    state = state or RateState()
    out: list[tuple[Any, Verdict]] = []
    if state.held and state.told_until is not None and at >= state.told_until:
        state, out = release(state)
    state, verdict = admit(state, at, limit=limit, window=window)
    if verdict is Verdict.COALESCE:
        return RateState(state.answered, state.told_until, (*state.held, item)), out
    return state, [*out, (item, verdict)]


def _utcnow() -> datetime:
    return datetime.now(UTC)


class RateLimitLogic(StatefulLogic[tuple[int, Any], tuple[int, Any, Verdict],
                                   tuple[RateState, datetime, int | None]]):
    """`op.stateful` keyed by customer id: (customer id, Inbound) -> (.., .., Verdict)."""

    def __init__(self, resume: tuple[RateState, datetime, int | None] | None, *, limit: int,
                 window: timedelta,
                 received_at: Callable[[Any], datetime],
                 now_getter: Callable[[], datetime] = _utcnow):
        self.state, self.forget_at, self.customer_id = resume or (RateState(), now_getter() + window, None)
        self.limit, self.window, self.received_at, self.now = limit, window, received_at, now_getter

    def on_item(self, value: tuple[int, Any]) -> tuple[Iterable[tuple[int, Any, Verdict]], bool]:
        customer_id, item = value
        self.customer_id = customer_id
        self.state, out = on_message(self.state, item, self.received_at(item), limit=self.limit,
                                     window=self.window)
        self.forget_at = self.now() + self.window
        return [(customer_id, i, v) for i, v in out], StatefulLogic.RETAIN

    def _release(self) -> list[tuple[int, Any, Verdict]]:
        self.state, out = release(self.state)
        return [(self.customer_id, i, v) for i, v in out]

    def on_notify(self) -> tuple[Iterable[tuple[int, Any, Verdict]], bool]:
        if self.state.held:  # the burst's window is over: answer it once
            self.forget_at = self.now() + self.window
            return self._release(), StatefulLogic.RETAIN
        return (), StatefulLogic.DISCARD  # idle for a window: nothing left to limit

    def on_eof(self) -> tuple[Iterable[tuple[int, Any, Verdict]], bool]:
        return self._release(), StatefulLogic.RETAIN

    def notify_at(self) -> datetime | None:
        if self.state.held and self.state.told_until is not None:
            return min(self.forget_at, self.state.told_until)
        return self.forget_at

    def snapshot(self) -> tuple[RateState, datetime, int | None]:
        return self.state, self.forget_at, self.customer_id


def builder(*, limit: int = LIMIT, window: timedelta = WINDOW,
            received_at: Callable[[Any], datetime]) -> Callable[[Any], RateLimitLogic]:
    return lambda resume: RateLimitLogic(resume, limit=limit, window=window, received_at=received_at)
