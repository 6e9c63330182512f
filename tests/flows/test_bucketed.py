"""Bucketed stateful logic: inner logics per key inside a bounded number of Bytewax keys."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bytewax.operators import StatefulLogic

from flows.bucketed import BucketedLogic, bucket_of

T0 = datetime(2026, 1, 1, tzinfo=UTC)


class Countdown(StatefulLogic):
    """Counts its items; on its timer emits the count and is discarded."""

    def __init__(self, resume, clock):
        self.count, self.at = resume or (0, clock() + timedelta(seconds=10))

    def on_item(self, value):
        self.count += value
        return [], StatefulLogic.RETAIN

    def on_notify(self):
        return [self.count], StatefulLogic.DISCARD

    def notify_at(self):
        return self.at

    def snapshot(self):
        return (self.count, self.at)


def make(resume=None, now=T0):
    clock = {"now": now}
    logic = BucketedLogic(lambda inner: Countdown(inner, lambda: clock["now"]), resume, lambda: clock["now"])
    return logic, clock


def test_bucket_of_is_stable_and_bounded():
    assert bucket_of("email:a@x.com") == bucket_of("email:a@x.com")
    assert {bucket_of(f"k{i}", 8) for i in range(1000)} == {str(b) for b in range(8)}


def test_each_inner_key_keeps_its_own_state_and_timer():
    logic, clock = make()
    logic.on_item(("a", 1))
    clock["now"] = T0 + timedelta(seconds=5)
    logic.on_item(("b", 2))
    logic.on_item(("a", 3))
    assert logic.notify_at() == T0 + timedelta(seconds=10)  # a's, the earliest
    clock["now"] = T0 + timedelta(seconds=11)
    out, discard = logic.on_notify()
    assert out == [4] and discard is StatefulLogic.RETAIN  # only a was due; b remains
    assert logic.notify_at() == T0 + timedelta(seconds=15)
    clock["now"] = T0 + timedelta(seconds=16)
    out, discard = logic.on_notify()
    assert out == [2] and discard is StatefulLogic.DISCARD  # bucket empty: Bytewax drops the key


def test_snapshot_resumes_every_inner_logic():
    logic, _ = make()
    logic.on_item(("a", 1))
    logic.on_item(("b", 5))
    resumed, clock = make(logic.snapshot())
    assert resumed.snapshot() == logic.snapshot()
    clock["now"] = T0 + timedelta(seconds=30)
    assert sorted(resumed.on_notify()[0]) == [1, 5]
