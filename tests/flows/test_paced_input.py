"""PacedSource: when a wrapped partition asks to be polled again, and that nothing is lost."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSink, TestingSource, run_main

from flows.paced_input import PacedSource, next_poll

NOW = datetime(2026, 1, 1, tzinfo=UTC)
BUSY, IDLE = timedelta(milliseconds=100), timedelta(milliseconds=250)


def test_a_full_batch_reads_on_at_once_a_partial_one_waits_busy_an_empty_one_waits_idle():
    assert next_poll(10, 10, NOW, None, BUSY, IDLE) is None
    assert next_poll(3, 10, NOW, None, BUSY, IDLE) == NOW + BUSY
    assert next_poll(0, 10, NOW, None, BUSY, IDLE) == NOW + IDLE


def test_a_partition_with_a_wake_up_time_of_its_own_keeps_it():
    own = NOW + timedelta(seconds=5)
    assert next_poll(0, 10, NOW, own, BUSY, IDLE) == own
    assert next_poll(10, 10, NOW, own, BUSY, IDLE) == own


def test_every_item_comes_through_in_order_and_the_source_still_ends():
    items = list(range(25))
    out: list[int] = []
    flow = Dataflow("paced")
    source = PacedSource(TestingSource(items, batch_size=4), batch_size=4,
                         busy=timedelta(milliseconds=1), idle=timedelta(milliseconds=1))
    op.output("out", op.input("in", flow, source), TestingSink(out))
    run_main(flow)
    assert out == items
