"""The dataflow's wiring without a broker: Bytewax's TestingSource in, TestingSinks out."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bytewax.connectors.kafka import KafkaSourceMessage
from bytewax.testing import TestingSink, TestingSource, run_main

from flows.metric_windows import merge_contents, summarize
from flows.metrics import MetricsSinks, WallClockWatermark, build_flow
from flows.sla import SlaConfig
from schema.events import Channel, SupportEvent, SupportEventKind

NOW = datetime.now(UTC)
A = (NOW - timedelta(minutes=30)).replace(second=0, microsecond=0)


def msg(value: bytes, offset: int) -> KafkaSourceMessage:
    return KafkaSourceMessage(key=b"1", value=value, topic="support.events", partition=0, offset=offset)


def ev(kind: str, key: str, at: datetime, **kw) -> bytes:
    return SupportEvent(kind=SupportEventKind(kind), channel=Channel.EMAIL, inbound_key=key,
                        occurred_at=at, **kw).to_bytes()


def test_flow_counts_windows_dead_letters_and_opens_timers():
    # Times taken when the test runs (not at import), so "now" is really on time.
    now = datetime.now(UTC)
    start = (now - timedelta(minutes=30)).replace(second=0, microsecond=0)
    values = [
        ev("received", "email:1", start + timedelta(seconds=1), sentiment=0.2),
        ev("received", "email:1", start + timedelta(seconds=1), sentiment=0.2),  # duplicate
        ev("replied", "email:1", start + timedelta(seconds=3), received_at=start + timedelta(seconds=1),
           reply_kind="agent", agent_tokens=10, kb_hit=True),
        ev("ticket_opened", "email:1", start, ticket_id="T-1"),
        b'{"kind": "nope"}',
        ev("received", "email:2", now, sentiment=0.6),  # on time: its window stays open (closes by wall clock)
    ]
    out = {name: [] for name in ("windows", "sla", "alerts", "alerts_topic", "dead", "dead_topic")}
    sinks = MetricsSinks(
        windows=TestingSink(out["windows"]), sla=TestingSink(out["sla"]),
        alerts=TestingSink(out["alerts"]), alerts_topic=TestingSink(out["alerts_topic"]),
        dead_letters=TestingSink(out["dead"]), dead_letters_topic=TestingSink(out["dead_topic"]),
    )
    flow = build_flow(TestingSource([msg(v, i) for i, v in enumerate(values)]), sinks, SlaConfig(),
                      source_topic="support.events", lateness=timedelta(seconds=5))
    run_main(flow)

    # the 30-minute-old events are late and come out at once; the current one stays open
    merged: dict = {}
    for update in out["windows"]:
        assert update.window_start == start and not update.closed
        merged = merge_contents(merged, update.contents)
    w = summarize(Channel.EMAIL, start, merged)
    assert (w.received, w.replied, w.kb_hits, w.agent_tokens) == (1, 1, 1, 10)
    assert w.first_response_p50_ms == 2000.0

    (dead,) = out["dead"]
    assert dead.offset == 4 and dead.reason.startswith("kind:")
    assert out["dead_topic"][0].key == b"support.events"
    # the 4-hour email timer was started, not fired (no wall time passed)
    assert out["sla"] == [] and out["alerts"] == []


def test_wall_clock_watermark_never_moves_back_and_wakes_after_lateness():
    now = [NOW]
    clock = WallClockWatermark(timedelta(seconds=10), lambda: now[0]).build(None)
    clock.before_batch()
    assert clock.on_notify() == NOW - timedelta(seconds=10)
    now[0] = NOW - timedelta(seconds=30)  # the system clock stepped back
    assert clock.on_notify() == NOW - timedelta(seconds=10)
    assert clock.to_system_utc(NOW) == NOW + timedelta(seconds=10)
    resumed = WallClockWatermark(timedelta(seconds=10), lambda: now[0]).build(clock.snapshot())
    assert resumed.on_notify() == NOW - timedelta(seconds=10)
