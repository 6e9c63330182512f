"""Per-customer message limit (the spec's 10 a minute), as keyed state in the support flow.

The ingress runs as several replicas, each with its own memory, so a limit per customer
there is one limit per replica. Here the state is keyed by customer id after identity
resolution: one limit for the whole system. Within the limit every message is answered;
beyond it the burst is coalesced: the messages are stored (handled as `coalesced`, in the
customer's history for the next answer) and the customer is told once to wait.

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


def admit(state: RateState | None, at: datetime, *, limit: int = LIMIT,
          window: timedelta = WINDOW) -> tuple[RateState, Verdict]:
    state = state or RateState()
    recent = tuple(t for t in state.answered if at - t < window)
    told = state.told_until if state.told_until is not None and at < state.told_until else None
    if len(recent) < limit:
        return RateState((*recent, at), told), Verdict.ANSWER
    if told is not None:
        return RateState(recent, told), Verdict.COALESCE
    # Told once per burst: until the oldest answered message leaves the window.
    return RateState(recent, recent[0] + window), Verdict.WAIT_NOTICE


def _utcnow() -> datetime:
    return datetime.now(UTC)


class RateLimitLogic(StatefulLogic[tuple[int, Any], tuple[int, Any, Verdict], tuple[RateState, datetime]]):
    """`op.stateful` keyed by customer id: (customer id, Inbound) -> (.., .., Verdict)."""

    def __init__(self, resume: tuple[RateState, datetime] | None, *, limit: int, window: timedelta,
                 received_at: Callable[[Any], datetime],
                 now_getter: Callable[[], datetime] = _utcnow):
        self.state, self.forget_at = resume or (RateState(), now_getter() + window)
        self.limit, self.window, self.received_at, self.now = limit, window, received_at, now_getter

    def on_item(self, value: tuple[int, Any]) -> tuple[Iterable[tuple[int, Any, Verdict]], bool]:
        customer_id, item = value
        self.state, verdict = admit(self.state, self.received_at(item), limit=self.limit,
                                    window=self.window)
        self.forget_at = self.now() + self.window
        return [(customer_id, item, verdict)], StatefulLogic.RETAIN

    def on_notify(self) -> tuple[Iterable[tuple[int, Any, Verdict]], bool]:
        return (), StatefulLogic.DISCARD  # idle for a window: nothing left to limit

    def notify_at(self) -> datetime | None:
        return self.forget_at

    def snapshot(self) -> tuple[RateState, datetime]:
        return self.state, self.forget_at


def builder(*, limit: int = LIMIT, window: timedelta = WINDOW,
            received_at: Callable[[Any], datetime]) -> Callable[[Any], RateLimitLogic]:
    return lambda resume: RateLimitLogic(resume, limit=limit, window=window, received_at=received_at)
