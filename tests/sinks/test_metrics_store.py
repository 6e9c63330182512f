"""The metrics store against the real Postgres: idempotent windows, SLA events, alerts,
dead letters, and the console's read queries over them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from flows.alerts import HealthSample, breach_alert, health_alerts, window_alerts
from flows.metric_windows import Contribution, WindowUpdate
from flows.sla import AlertThresholds, SlaOutcome
from schema.events import Channel, DeadLetter, MetricWindow
from schema.migrate import migrate
from schema.queries import metrics as q
from sinks.metrics_store import (
    PostgresSink,
    write_alerts,
    write_dead_letters,
    write_sla_outcomes,
    write_windows,
)

W0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


@pytest.fixture
def db(fresh_database):
    migrate(fresh_database)
    with psycopg.connect(fresh_database) as conn:
        yield conn


def received(n: int, start: int = 0, sentiment: float = 0.5) -> dict[str, Contribution]:
    return {f"received:web:{i}": Contribution("received", sentiment=sentiment) for i in range(start, start + n)}


def latencies(values: list[float]) -> dict[str, Contribution]:
    return {f"first:web:{i}": Contribution("first_response", latency_ms=v) for i, v in enumerate(values)}


def window_rows(conn) -> list[tuple]:
    return conn.execute(
        "SELECT channel, window_start, received, replied, first_response_p95_ms, sentiment_mean "
        "FROM metric_windows ORDER BY channel, window_start").fetchall()


def test_window_written_twice_stays_one_row_with_the_same_figures(db):
    update = WindowUpdate(Channel.WEB, W0, received(3) | latencies([100, 200, 300]), closed=True)
    with db.transaction():
        first = write_windows(db, [update])
    with db.transaction():
        again = write_windows(db, [update, update])
    assert first == again
    rows = window_rows(db)
    assert len(rows) == 1
    assert rows[0][2] == 3 and rows[0][4] == pytest.approx(290.0)


def test_late_facts_update_the_closed_window(db):
    with db.transaction():
        write_windows(db, [WindowUpdate(Channel.WEB, W0, received(2, sentiment=1.0), closed=True)])
    late = WindowUpdate(Channel.WEB, W0, received(1, start=2, sentiment=-0.5), closed=False)
    with db.transaction():
        (stored,) = write_windows(db, [late, late])  # and replayed
    assert stored.received == 3 and stored.sentiment_mean == pytest.approx(0.5)
    assert window_rows(db) == [("web", W0, 3, 0, None, pytest.approx(0.5))]


def test_windows_of_several_channels_and_minutes_in_one_batch(db):
    updates = [WindowUpdate(ch, W0 + timedelta(minutes=m), received(m + 1), closed=True)
               for ch in (Channel.EMAIL, Channel.WEB) for m in range(3)]
    with db.transaction():
        stored = write_windows(db, updates)
    assert len(stored) == 6
    assert [r[2] for r in window_rows(db)] == [1, 2, 3, 1, 2, 3]


def test_sla_events_unique_per_ticket_and_kind(db):
    deadline = W0 + timedelta(minutes=5)
    breach = SlaOutcome("T-1", Channel.WHATSAPP, "normal", "breach", deadline, deadline)
    met = SlaOutcome("T-2", Channel.WHATSAPP, "normal", "met", deadline, W0 + timedelta(minutes=1),
                     W0 + timedelta(minutes=1))
    for _ in range(2):
        with db.transaction():
            write_sla_outcomes(db, [breach, met])
    rows = db.execute("SELECT ticket_id, kind FROM sla_events ORDER BY ticket_id").fetchall()
    assert rows == [("T-1", "breach"), ("T-2", "met")]
    # the reply for T-1 was sent in time after all: the breach is removed, met recorded
    in_time = SlaOutcome("T-1", Channel.WHATSAPP, "normal", "met", deadline, W0 + timedelta(minutes=4),
                         W0 + timedelta(minutes=4))
    with db.transaction():
        write_sla_outcomes(db, [in_time, breach])  # a replayed breach after it changes nothing
    rows = db.execute("SELECT ticket_id, kind FROM sla_events ORDER BY ticket_id").fetchall()
    assert rows == [("T-1", "met"), ("T-2", "met")]


def test_late_reply_is_added_to_the_breach(db):
    deadline = W0 + timedelta(minutes=5)
    with db.transaction():
        write_sla_outcomes(db, [SlaOutcome("T-9", Channel.WEB, "high", "breach", deadline, deadline)])
        write_sla_outcomes(db, [SlaOutcome("T-9", Channel.WEB, "high", "breach", deadline, deadline,
                                           deadline + timedelta(minutes=3), announce=False)])
    assert db.execute("SELECT kind, responded_at FROM sla_events").fetchall() == [
        ("breach", deadline + timedelta(minutes=3))]


def test_alerts_one_row_per_kind_and_minute_with_subjects_merged(db):
    limits = AlertThresholds()
    mk = lambda ch, rep, esc: MetricWindow(channel=ch, window_start=W0, window_end=W0 + timedelta(minutes=1),
                                           replied=rep, escalated=esc)
    web = window_alerts(mk(Channel.WEB, 2, 2), limits, W0)
    email = window_alerts(mk(Channel.EMAIL, 1, 4), limits, W0)
    breaches = [breach_alert(SlaOutcome(t, Channel.WEB, "normal", "breach", W0, W0), W0) for t in ("A", "B")]
    for _ in range(2):  # replay
        with db.transaction():
            write_alerts(db, web + email + breaches)
    rows = {r[0]: r for r in db.execute("SELECT kind, value, detail FROM alerts").fetchall()}
    assert set(rows) == {"escalation_rate", "sla_breach"}
    assert rows["escalation_rate"][1] == pytest.approx(0.8)
    assert set(rows["escalation_rate"][2]["subjects"]) == {"web", "email"}
    assert rows["sla_breach"][1] == 2 and set(rows["sla_breach"][2]["subjects"]) == {"A", "B"}


def test_dead_letters_unique_per_source_offset(db):
    dead = DeadLetter.for_raw(source_topic="support.events", raw=b"{oops", key=b"k", partition=1,
                              offset=42, reason="Invalid JSON")
    for _ in range(2):
        with db.transaction():
            write_dead_letters(db, [dead])
    assert db.execute("SELECT source_topic, partition, \"offset\", msg_key, raw FROM dead_letters").fetchall() == [
        ("support.events", 1, 42, b"k", b"{oops")]


def test_bytewax_sink_partition_commits_each_batch(fresh_database):
    migrate(fresh_database)
    part = PostgresSink(fresh_database, write_windows).build("windows_db", 0, 1)
    part.write_batch([WindowUpdate(Channel.EMAIL, W0, received(4), closed=True)])
    part.close()
    with psycopg.connect(fresh_database) as conn:
        assert conn.execute("SELECT received FROM metric_windows").fetchone() == (4,)


def test_console_queries_read_what_the_store_wrote(db):
    now = W0 + timedelta(minutes=10)
    updates = [
        WindowUpdate(Channel.WEB, W0, received(4) | latencies([1000, 2000, 3000, 4000])
                     | {"replied:web:0": Contribution("replied", tokens=50, kb_hit=True),
                        "replied:web:1": Contribution("replied", tokens=30, kb_hit=False),
                        "escalated:web:2": Contribution("escalated")}, closed=True),
        WindowUpdate(Channel.EMAIL, W0 + timedelta(minutes=1), received(2), closed=True),
    ]
    deadline = W0 + timedelta(minutes=5)
    with db.transaction():
        write_windows(db, updates)
        write_sla_outcomes(db, [SlaOutcome("T-1", Channel.WEB, "normal", "breach", deadline, deadline),
                                SlaOutcome("T-2", Channel.WEB, "normal", "met", deadline, W0, W0)])
        write_alerts(db, health_alerts(HealthSample(at=now, dead_letters_new=3), AlertThresholds()))
    kpis = q.kpis(db, since=W0)
    assert kpis.received == 6 and kpis.replied == 2 and kpis.escalated == 1
    assert kpis.escalation_rate == pytest.approx(1 / 3)
    assert kpis.first_response_p95_s == pytest.approx(3.85)  # exact, over the raw latencies
    assert kpis.kb_hit_rate == pytest.approx(0.5) and kpis.agent_tokens == 80
    assert (kpis.sla_met, kpis.sla_breached) == (1, 1)
    series = q.first_response_series(db, since=W0, until=now)
    assert [(p.channel, p.window_start) for p in series] == [("web", W0)]
    assert series[0].p95_s == pytest.approx(3.85)
    volume = q.volume_series(db, since=W0, until=now)
    assert [(v.channel, v.received) for v in volume] == [("web", 4), ("email", 2)]
    (breach,) = q.recent_breaches(db, limit=10)
    assert breach.ticket_id == "T-1" and breach.deadline == deadline
    (alert,) = q.recent_alerts(db, limit=10)
    assert alert.kind == "dead_letters" and alert.value == 3
    by_channel = {r.channel: r for r in q.sla_summary(db, since=W0)}
    assert by_channel["web"].met == 1 and by_channel["web"].breached == 1


def test_flow_progress_keeps_the_highest_offset_and_tolerates_a_missing_table(db):
    from sinks.metrics_store import write_flow_progress

    with db.transaction():
        write_flow_progress(db, [("metrics", "support.events", 0, 5), ("metrics", "support.events", 0, 9),
                                 ("metrics", "support.events", 1, 3)])
        write_flow_progress(db, [("metrics", "support.events", 0, 7)])  # replay from a snapshot
    assert db.execute("SELECT partition, next_offset FROM flow_progress ORDER BY partition").fetchall() == [
        (0, 9), (1, 3)]
    db.execute("DROP TABLE flow_progress")
    with db.transaction():
        write_flow_progress(db, [("metrics", "support.events", 0, 11)])
        write_windows(db, [WindowUpdate(Channel.WEB, W0, received(1), closed=True)])  # still usable
    assert db.execute("SELECT received FROM metric_windows").fetchone() == (1,)
