"""Window arithmetic without a broker: facts, de-duplication, merge and the aggregate."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from flows.metric_windows import (
    Contribution,
    InboundSeen,
    add_fact,
    contents_from_json,
    contents_to_json,
    facts_for,
    merge_contents,
    percentile,
    summarize,
    window_start_of,
    window_start_of_id,
)
from schema.events import Channel, SupportEvent, SupportEventKind

T0 = datetime(2026, 3, 2, 10, 0, 0, tzinfo=UTC)


def ev(kind: str, key: str, at: float, **kw) -> SupportEvent:
    return SupportEvent(kind=SupportEventKind(kind), channel=kw.pop("channel", Channel.WHATSAPP),
                        inbound_key=key, occurred_at=T0 + timedelta(seconds=at), **kw)


def run_facts(events: list[SupportEvent]):
    seen: dict[str, InboundSeen] = {}
    contents: dict = {}
    for e in events:
        seen[e.inbound_key], facts = facts_for(seen.get(e.inbound_key, InboundSeen()), e)
        for f in facts:
            add_fact(contents, f)
    return contents


def test_percentile_interpolates_between_ranks():
    assert percentile([], 0.95) is None
    assert percentile([5.0], 0.95) == 5.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 0.5) == pytest.approx(2.5)
    assert percentile(range(1, 101), 0.95) == pytest.approx(95.05)


def test_window_start_is_the_utc_minute_and_matches_bytewax_window_ids():
    ts = datetime(2026, 3, 2, 11, 7, 59, 999000, tzinfo=UTC)
    assert window_start_of(ts) == datetime(2026, 3, 2, 11, 7, tzinfo=UTC)
    window_id = int(ts.timestamp() // 60)
    assert window_start_of_id(window_id) == window_start_of(ts)


def test_known_event_set_gives_expected_window():
    received = T0
    events = [
        ev("received", "whatsapp:a", 0, sentiment=0.5),
        ev("received", "whatsapp:b", 1, sentiment=-0.5),
        ev("received", "whatsapp:c", 2, sentiment=0.3),
        ev("replied", "whatsapp:a", 2, received_at=received, reply_kind="agent", agent_tokens=120, kb_hit=True),
        ev("replied", "whatsapp:b", 5, received_at=received + timedelta(seconds=1), reply_kind="agent",
           agent_tokens=80, kb_hit=False),
        ev("escalated", "whatsapp:c", 3, reason="refund"),
        # the acknowledgement is the first response of c, but not an answer
        ev("replied", "whatsapp:c", 4, received_at=received + timedelta(seconds=2), reply_kind="escalation_ack"),
        ev("sent", "whatsapp:a", 6, received_at=received, reply_kind="agent"),
        ev("failed", "whatsapp:b", 7, reply_kind="agent"),
    ]
    contents = run_facts(events)
    w = summarize(Channel.WHATSAPP, T0, contents)
    assert (w.received, w.replied, w.escalated, w.sent, w.failed) == (3, 2, 1, 1, 1)
    assert w.escalation_rate == pytest.approx(1 / 3)
    # first responses: a 2000 ms (replied before sent), b 4000 ms, c 2000 ms
    assert w.first_response_p50_ms == pytest.approx(2000.0)
    assert w.first_response_p95_ms == pytest.approx(2000 + 0.9 * 2000)
    assert w.sentiment_mean == pytest.approx(0.1)
    assert (w.agent_tokens, w.kb_lookups, w.kb_hits) == (200, 2, 1)
    assert w.window_end - w.window_start == timedelta(minutes=1)


def test_replayed_events_count_once():
    events = [ev("received", "web:1", 0, sentiment=0.2), ev("replied", "web:1", 1, received_at=T0,
                                                            reply_kind="agent")]
    once = summarize(Channel.WEB, T0, run_facts(events))
    twice = summarize(Channel.WEB, T0, run_facts(events + events))
    assert once == twice
    assert (twice.received, twice.replied) == (1, 1)


def test_latency_falls_back_to_the_received_event_time():
    events = [ev("received", "email:x", 0), ev("replied", "email:x", 3, reply_kind="agent")]
    w = summarize(Channel.EMAIL, T0, run_facts(events))
    assert w.first_response_p50_ms == pytest.approx(3000.0)


def test_merge_is_a_union_so_late_and_replayed_parts_never_double_count():
    events = [ev("received", f"web:{i}", i, sentiment=0.1 * i) for i in range(6)]
    full = run_facts(events)
    on_time, late = run_facts(events[:4]), run_facts(events[3:])  # event 3 in both parts
    merged = merge_contents(merge_contents(on_time, late), on_time)
    assert summarize(Channel.WEB, T0, merged) == summarize(Channel.WEB, T0, full)
    assert summarize(Channel.WEB, T0, merged).received == 6


def test_contents_round_trip_through_json():
    contents = {"first:a": Contribution("first_response", latency_ms=1234.5678),
                "replied:a": Contribution("replied", tokens=7, kb_hit=False),
                "received:a": Contribution("received", sentiment=-0.25)}
    assert contents_from_json(contents_to_json(contents)) == {
        "first:a": Contribution("first_response", latency_ms=1234.568),
        "replied:a": Contribution("replied", tokens=7, kb_hit=False),
        "received:a": Contribution("received", sentiment=-0.25),
    }


def test_ticket_opened_adds_nothing_to_windows():
    contents = run_facts([ev("ticket_opened", "web:t", 0, ticket_id="T-1")])
    assert contents == {}
