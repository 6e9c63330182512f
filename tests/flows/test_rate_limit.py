"""The per-customer message limit (flows/rate_limit.py): the pure rule and the keyed state
in a real Bytewax dataflow (TestingSource -> op.stateful -> TestingSink)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSink, TestingSource, run_main

from flows.rate_limit import RateLimitLogic, RateState, Verdict, admit, builder, on_message, release

T0 = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def run_burst(times: list[datetime], limit: int = 10) -> list[Verdict]:
    state, out = None, []
    for t in times:
        state, v = admit(state, t, limit=limit)
        out.append(v)
    return out


def test_ten_a_minute_answered_the_rest_coalesced_with_one_wait_notice():
    verdicts = run_burst([T0 + timedelta(seconds=i) for i in range(15)])
    assert verdicts[:10] == [Verdict.ANSWER] * 10
    assert verdicts[10:] == [Verdict.WAIT_NOTICE] + [Verdict.COALESCE] * 4


def test_the_limit_reopens_as_answered_messages_leave_the_window():
    times = [T0 + timedelta(seconds=i) for i in range(12)] + [T0 + timedelta(seconds=61)]
    verdicts = run_burst(times)
    assert verdicts[10:] == [Verdict.WAIT_NOTICE, Verdict.COALESCE, Verdict.ANSWER]


def test_a_second_burst_is_told_again():
    first = [T0 + timedelta(seconds=i) for i in range(11)]
    second = [T0 + timedelta(minutes=5, seconds=i) for i in range(11)]
    verdicts = run_burst(first + second)
    assert verdicts.count(Verdict.WAIT_NOTICE) == 2


def test_a_replay_decides_the_same():
    times = [T0 + timedelta(seconds=i * 2) for i in range(14)]
    assert run_burst(times) == run_burst(times)


def test_the_rest_of_a_burst_is_held_then_answered_once_when_the_window_reopens():
    state, emitted = None, []
    for i in range(14):
        state, out = on_message(state, f"m{i}", T0 + timedelta(seconds=i))
        emitted += out
    assert [v for _, v in emitted] == [Verdict.ANSWER] * 10 + [Verdict.WAIT_NOTICE]
    assert state.held == ("m11", "m12", "m13") and state.told_until == T0 + timedelta(minutes=1)
    # A message after the window: the held burst goes first (stored), its last one answered.
    state, out = on_message(state, "late", T0 + timedelta(seconds=75))
    assert out == [("m11", Verdict.COALESCE), ("m12", Verdict.COALESCE), ("m13", Verdict.ANSWER),
                   ("late", Verdict.ANSWER)]
    assert state.held == ()
    assert release(RateState()) == (RateState(), [])


def test_a_held_burst_is_released_by_the_timer_without_further_messages():
    now = [T0]
    logic = RateLimitLogic(None, limit=2, window=timedelta(minutes=1), received_at=lambda t: t,
                           now_getter=lambda: now[0])
    for i in range(5):
        logic.on_item((9, T0 + timedelta(seconds=i)))
    assert logic.notify_at() == T0 + timedelta(minutes=1)  # when the burst's window ends
    out, discard = logic.on_notify()
    assert [(c, t, v) for c, t, v in out] == [(9, T0 + timedelta(seconds=3), Verdict.COALESCE),
                                             (9, T0 + timedelta(seconds=4), Verdict.ANSWER)]
    assert not discard and logic.on_notify() == ((), True)


def test_idle_keys_are_dropped_so_unique_senders_cannot_grow_state():
    now = [T0]
    logic = RateLimitLogic(None, limit=10, window=timedelta(minutes=1), received_at=lambda t: t,
                           now_getter=lambda: now[0])
    out, discard = logic.on_item((1, T0))
    assert [v for *_, v in out] == [Verdict.ANSWER] and not discard
    assert logic.notify_at() == T0 + timedelta(minutes=1)
    assert logic.on_notify() == ((), True)  # discarded when idle for a window
    assert isinstance(logic.snapshot()[0], RateState)


def test_one_limit_per_customer_across_sources_in_a_dataflow():
    # Two "replicas" (sources) feed the same customer: the flow's keyed state counts both.
    items = [("7", (7, T0 + timedelta(seconds=i))) for i in range(12)]
    items += [("8", (8, T0 + timedelta(seconds=i))) for i in range(3)]
    out: list = []
    flow = Dataflow("rate_limit_test")
    a = op.input("replica_a", flow, TestingSource(items[0::2]))
    b = op.input("replica_b", flow, TestingSource(items[1::2]))
    merged = op.merge("merge", a, b)
    limited = op.stateful("rate_limit", merged, builder(received_at=lambda t: t))
    op.output("out", limited, TestingSink(out))
    run_main(flow)
    by_customer: dict[str, list[Verdict]] = {}
    for key, (_cid, _t, verdict) in out:
        by_customer.setdefault(key, []).append(verdict)
    # Ten answered, one told to wait, the last held and answered when the input ends.
    assert by_customer["7"].count(Verdict.ANSWER) == 11
    assert by_customer["7"].count(Verdict.WAIT_NOTICE) == 1
    assert by_customer["8"] == [Verdict.ANSWER] * 3
