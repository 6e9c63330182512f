"""The metrics flow as it runs in production (`fte metrics-flow`, a separate process with
recovery) against the real Kafka and Postgres: windows from a known event set, late data,
dead letters, SLA timers on wall-clock time, threshold alerts, lag, and replays (kill -9
and restart, then a second run over the whole topic) that leave every window single and
unchanged."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from confluent_kafka import Consumer, TopicPartition
from testkit import wait_for

from fte.kafka import ensure_topics, idempotent_producer
from schema.events import Alert, Channel, DeadLetter, SupportEvent, SupportEventKind
from schema.migrate import migrate
from schema.topics import ALERTS, DEADLETTER, SUPPORT_EVENTS, WEB_INBOUND, topic_name

REPO = Path(__file__).resolve().parents[2]
NOW = datetime.now(UTC)
# A fixed past minute for the known event set; its last event sits near the end of the next
# minute so both windows close within seconds of being read.
A = (NOW - timedelta(hours=2)).replace(second=0, microsecond=0)
LIVE = NOW  # live scenario (SLA timers, threshold alerts): set once the flow is consuming


SLA_YAML = """
first_response: {whatsapp: 3s, web: 1h, email: 4h}
priority_factors: {urgent: 0.5, high: 1.0, normal: 1.0, low: 2.0}
business_hours: {timezone: UTC, days: [mon, tue, wed, thu, fri], open: "09:00", close: "17:00"}
alerts:
  escalation_rate: 0.25
  escalation_min_handled: 4
  first_response_p95_s: 3.0
  consumer_lag: 100
  dead_letters_new: 0
  health_poll: 1s
"""


def _with_database(url: str, name: str) -> str:
    from urllib.parse import urlsplit, urlunsplit

    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


def ev(kind: str, key: str, at: datetime, channel: Channel = Channel.WEB, **kw) -> SupportEvent:
    return SupportEvent(kind=SupportEventKind(kind), channel=channel, inbound_key=key,
                        occurred_at=at, customer_id=kw.pop("customer_id", 1), **kw)


def s(seconds: float) -> timedelta:
    return timedelta(seconds=seconds)


def known_events() -> list[SupportEvent]:
    return [
        ev("received", "web:1", A + s(5), sentiment=0.4, received_at=A + s(5)),
        ev("received", "web:2", A + s(6), sentiment=-0.2, received_at=A + s(6)),
        ev("received", "web:3", A + s(7), sentiment=0.1, received_at=A + s(7)),
        ev("replied", "web:1", A + s(8), received_at=A + s(5), reply_kind="agent", agent_tokens=100, kb_hit=True),
        ev("escalated", "web:3", A + s(9), reason="refund"),
        ev("replied", "web:3", A + s(9.5), received_at=A + s(7), reply_kind="escalation_ack"),
        ev("replied", "web:2", A + s(10), received_at=A + s(6), reply_kind="agent", agent_tokens=50, kb_hit=False),
        ev("sent", "web:1", A + s(12), received_at=A + s(5), reply_kind="agent"),
        ev("received", "web:1", A + s(5), sentiment=0.4, received_at=A + s(5)),  # re-emitted upstream
        ev("received", "email:1", A + s(70), channel=Channel.EMAIL, sentiment=0.0),
        ev("received", "email:2", A + s(118), channel=Channel.EMAIL, sentiment=1.0),
    ]


def live_events() -> list[SupportEvent]:
    wa = Channel.WHATSAPP
    events = [
        ev("ticket_opened", "whatsapp:t1", LIVE, channel=wa, ticket_id="T-unanswered"),
        ev("ticket_opened", "whatsapp:t2", LIVE, channel=wa, ticket_id="T-answered"),
        ev("sent", "whatsapp:t2", LIVE + s(1), channel=wa, ticket_id="T-answered", reply_kind="agent",
           received_at=LIVE - s(5)),
    ]
    # 4 handled, 2 escalated (50 % > 25 %); answers took 5 s (p95 > 3 s)
    for i in range(4):
        events.append(ev("received", f"whatsapp:m{i}", LIVE - s(5), channel=wa, received_at=LIVE - s(5)))
    for i in range(2):
        events.append(ev("replied", f"whatsapp:m{i}", LIVE, channel=wa, reply_kind="agent",
                         received_at=LIVE - s(5)))
    for i in range(2, 4):
        events.append(ev("escalated", f"whatsapp:m{i}", LIVE, channel=wa, reason="anger"))
    return events


def produce(bootstrap: str, topic: str, values: list[bytes], partition: int | None = None) -> None:
    """Keyed like the support flow's events: one message's events share a partition, in order."""
    producer = idempotent_producer(bootstrap)
    for value in values:
        kwargs = {"partition": partition} if partition is not None else {}
        try:
            key = json.loads(value)["inbound_key"].encode()
        except (ValueError, KeyError, TypeError):
            key = b"raw"
        producer.produce(topic, value=value, key=key, **kwargs)
    assert producer.flush(15) == 0


class FlowProcess:
    def __init__(self, env: dict[str, str], log_path: Path):
        self.env = env
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None

    def start(self, recovery_dir: Path) -> None:
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "fte.cli", "metrics-flow", "--recovery-dir", str(recovery_dir)],
            cwd=REPO, env=self.env, stdout=log, stderr=subprocess.STDOUT)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


@pytest.fixture(scope="module")
def env(stack, tmp_path_factory):
    """A migrated database, topics and config of this module's own."""
    work = tmp_path_factory.mktemp("metrics-flow")
    name = f"t_metrics_{uuid.uuid4().hex[:8]}"
    admin = _with_database(stack.database_url, "postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    database_url = _with_database(stack.database_url, name)
    migrate(database_url)
    prefix = f"t{uuid.uuid4().hex[:10]}."
    ensure_topics(stack.kafka_bootstrap, prefix)
    (work / "sla.yaml").write_text(SLA_YAML)
    flow_env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "KAFKA_BOOTSTRAP_SERVERS": stack.kafka_bootstrap,
        "TOPIC_PREFIX": prefix,
        "SLA_CONFIG_FILE": str(work / "sla.yaml"),
        "METRICS_ALLOWED_LATENESS_S": "2",
        "RECOVERY_SNAPSHOT_S": "1",
        "LOG_LEVEL": "WARNING",
    }
    yield {"database_url": database_url, "prefix": prefix, "bootstrap": stack.kafka_bootstrap,
           "work": work, "flow_env": flow_env}
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="module")
def flow(env):
    """The flow running; the live scenario is produced first so its timers run meanwhile."""
    # The support flow's progress table (migration 004); created here if not migrated yet.
    with psycopg.connect(env["database_url"], autocommit=True) as conn:
        conn.execute("""CREATE TABLE IF NOT EXISTS flow_progress (
            flow text NOT NULL, topic text NOT NULL, partition int NOT NULL,
            next_offset bigint NOT NULL, updated_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (flow, topic, partition))""")
    global LIVE
    events_topic = topic_name(SUPPORT_EVENTS, env["prefix"])
    process = FlowProcess(env["flow_env"], env["work"] / "flow.log")
    process.start(env["work"] / "recovery")
    # consuming once an (old, hence late) event reaches its window
    ping_at = A - timedelta(hours=1)
    produce(env["bootstrap"], events_topic, [ev("received", "email:ping", ping_at, channel=Channel.EMAIL).to_bytes()])
    wait_for(lambda: window(env, "email", ping_at.replace(second=0)), 60, "the flow to consume")
    # Live traffic is stamped when it happens; alerts come from windows closed on time.
    LIVE = datetime.now(UTC)
    produce(env["bootstrap"], events_topic, [e.to_bytes() for e in live_events()])
    yield process
    process.stop()


def db(env) -> psycopg.Connection:
    return psycopg.connect(env["database_url"], autocommit=True)


def window(env, channel: str, start: datetime):
    with db(env) as conn:
        return conn.execute(
            "SELECT received, replied, escalated, sent, failed, first_response_p50_ms, "
            "first_response_p95_ms, sentiment_mean, agent_tokens, kb_lookups, kb_hits "
            "FROM metric_windows WHERE channel = %s AND window_start = %s", (channel, start)).fetchone()


def all_windows(env) -> list[tuple]:
    with db(env) as conn:
        return conn.execute(
            "SELECT channel, window_start, received, replied, escalated, sent, failed, "
            "first_response_p50_ms, first_response_p95_ms, sentiment_mean, agent_tokens, kb_lookups, "
            "kb_hits, contributions FROM metric_windows ORDER BY channel, window_start").fetchall()


def read_topic(bootstrap: str, topic: str, partitions: int, timeout: float = 5.0) -> list[bytes]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"t-{uuid.uuid4().hex}",
                         "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    values, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        msg = consumer.poll(0.2)
        if msg is not None and msg.error() is None:
            values.append(msg.value())
    consumer.close()
    return values


def test_known_events_give_the_expected_windows(env, flow):
    produce(env["bootstrap"], topic_name(SUPPORT_EVENTS, env["prefix"]), [e.to_bytes() for e in known_events()])
    # Events of one window arrive from several partitions: part of them may come after the
    # window closed and are merged in as late facts; the row converges to the full figures.
    counts = (3, 2, 1, 1, 0)
    row = wait_for(lambda: (w := window(env, "web", A)) and w[:5] == counts and w, 60,
                   f"the web window to reach {counts}")
    _counts, p50, p95, sentiment, tokens, lookups, hits = row[:5], *row[5:]
    # first responses 3000, 4000 and 2500 ms (the acknowledgement answered web:3 first)
    assert p50 == pytest.approx(3000.0) and p95 == pytest.approx(3900.0)
    assert sentiment == pytest.approx(0.1)
    assert (tokens, lookups, hits) == (150, 2, 1)
    email = wait_for(lambda: (w := window(env, "email", A + timedelta(minutes=1))) and w[0] == 2 and w, 30,
                     "the email window")
    assert email[7] == pytest.approx(0.5)


def test_late_event_updates_the_closed_window(env, flow):
    wait_for(lambda: (w := window(env, "web", A)) and w[0] == 3, 60, "the web window")
    late = ev("received", "web:4", A + s(20), sentiment=0.5, received_at=A + s(20))
    produce(env["bootstrap"], topic_name(SUPPORT_EVENTS, env["prefix"]), [late.to_bytes()])
    row = wait_for(lambda: (w := window(env, "web", A)) and w[0] == 4 and w, 30, "the late event merged")
    assert row[7] == pytest.approx((0.4 - 0.2 + 0.1 + 0.5) / 4)
    with db(env) as conn:
        assert conn.execute("SELECT count(*) FROM metric_windows WHERE channel = 'web' AND window_start = %s",
                            (A,)).fetchone() == (1,)


def test_invalid_event_goes_to_dead_letters_and_raises_an_alert(env, flow):
    topic = topic_name(SUPPORT_EVENTS, env["prefix"])
    bad = json.dumps({"schema_version": 1, "kind": "received", "channel": "fax",
                      "inbound_key": "x", "occurred_at": NOW.isoformat()}).encode()
    produce(env["bootstrap"], topic, [bad, b"\xff not json"])

    def dead_rows():
        with db(env) as conn:
            rows = conn.execute("SELECT source_topic, reason, raw FROM dead_letters ORDER BY id").fetchall()
        return len(rows) >= 2 and rows

    rows = wait_for(dead_rows, 30, "two dead letters")
    assert {r[0] for r in rows} == {topic}
    assert any(r[1].startswith("channel:") and r[2] == bad for r in rows)
    letters = [DeadLetter.model_validate_json(v) for v in
               read_topic(env["bootstrap"], topic_name(DEADLETTER, env["prefix"]), DEADLETTER.partitions)]
    assert {d.raw for d in letters} >= {bad, b"\xff not json"}

    def dead_letter_alert():
        with db(env) as conn:
            return conn.execute("SELECT value FROM alerts WHERE kind = 'dead_letters'").fetchall()

    assert wait_for(dead_letter_alert, 30, "a dead_letters alert")


def sla_rows(env) -> dict[str, list[str]]:
    with db(env) as conn:
        rows = conn.execute("SELECT ticket_id, kind FROM sla_events ORDER BY ticket_id, kind").fetchall()
    out: dict[str, list[str]] = {}
    for ticket, kind in rows:
        out.setdefault(ticket, []).append(kind)
    return out


def test_sla_timer_fires_for_the_unanswered_ticket_only(env, flow):
    rows = wait_for(lambda: "T-unanswered" in (r := sla_rows(env)) and r, 45, "the SLA breach")
    assert rows["T-unanswered"] == ["breach"]
    assert rows["T-answered"] == ["met"]
    with db(env) as conn:
        (deadline,) = conn.execute("SELECT deadline FROM sla_events WHERE ticket_id = 'T-unanswered'").fetchone()
        assert deadline == LIVE + s(3)
        alert = conn.execute("SELECT value, detail FROM alerts WHERE kind = 'sla_breach'").fetchone()
    assert alert is not None and set(alert[1]["subjects"]) == {"T-unanswered"}


def test_threshold_alerts_reach_the_table_and_the_topic(env, flow):
    bucket = LIVE.replace(second=0, microsecond=0)

    def alerts():
        with db(env) as conn:
            rows = conn.execute("SELECT kind, value, detail FROM alerts WHERE bucket = %s AND kind IN "
                                "('escalation_rate', 'first_response_p95')", (bucket,)).fetchall()
        return len(rows) == 2 and {r[0]: r for r in rows}

    # The live window closes on wall-clock time (no later event pushes it): <= 60 s + lateness.
    rows = wait_for(alerts, 90, "escalation-rate and p95 alerts")
    assert rows["escalation_rate"][1] == pytest.approx(0.5)
    # first responses 5 s, 5 s and 6 s (T-answered's reply): p95 = 5 + 0.9 * (6 - 5)
    assert rows["first_response_p95"][1] == pytest.approx(5.9)
    assert set(rows["escalation_rate"][2]["subjects"]) == {"whatsapp"}
    kinds = {Alert.model_validate_json(v).kind
             for v in read_topic(env["bootstrap"], topic_name(ALERTS, env["prefix"]), ALERTS.partitions)}
    assert {"escalation_rate", "first_response_p95", "sla_breach", "dead_letters"} <= kinds


def test_consumer_lag_above_threshold_alerts(env, flow):
    inbound = topic_name(WEB_INBOUND, env["prefix"])
    produce(env["bootstrap"], inbound, [b"{}"] * 150, partition=0)
    with db(env) as conn:
        conn.execute("INSERT INTO flow_progress (flow, topic, partition, next_offset) VALUES "
                     "('support', %s, 0, 20) ON CONFLICT DO NOTHING", (inbound,))

    def lag_alert():
        with db(env) as conn:
            return conn.execute("SELECT value, detail FROM alerts WHERE kind = 'consumer_lag'").fetchone()

    value, detail = wait_for(lag_alert, 30, "a consumer_lag alert")
    assert value == 130.0 and detail["subjects"]["support"]["partitions"] == {f"{inbound}[0]": 130}


def test_flow_records_its_own_progress(env, flow):
    events_topic = topic_name(SUPPORT_EVENTS, env["prefix"])
    consumer = Consumer({"bootstrap.servers": env["bootstrap"], "group.id": "t-marks"})
    marks = {p: consumer.get_watermark_offsets(TopicPartition(events_topic, p), timeout=5)[1]
             for p in range(SUPPORT_EVENTS.partitions)}
    consumer.close()

    def progress():
        with db(env) as conn:
            rows = conn.execute("SELECT partition, next_offset FROM flow_progress WHERE flow = 'metrics' "
                                "AND topic = %s", (events_topic,)).fetchall()
        got = dict(rows)
        return got == {p: o for p, o in marks.items() if o > 0} and got

    wait_for(progress, 30, f"flow_progress to reach the high watermarks {marks}")


def test_replays_leave_every_window_single_and_unchanged(env, flow):
    # everything above has settled: the live window was written
    wait_for(lambda: window(env, "whatsapp", LIVE.replace(second=0, microsecond=0)), 90, "the live window")
    time.sleep(3)
    before_windows, before_sla = all_windows(env), sla_rows(env)
    # crash and resume from the recovery snapshots
    flow.kill()
    flow.start(env["work"] / "recovery")
    time.sleep(10)
    assert flow.alive()
    assert all_windows(env) == before_windows and sla_rows(env) == before_sla
    # the resumed flow consumes: a new event lands in its window, nothing else moves
    B = A - timedelta(minutes=30)
    produce(env["bootstrap"], topic_name(SUPPORT_EVENTS, env["prefix"]),
            [ev("received", "web:after-restart", B).to_bytes()])
    assert wait_for(lambda: window(env, "web", B), 30, "the event after restart")[0] == 1
    assert [r for r in all_windows(env) if r[1] != B] == before_windows
    before_windows = all_windows(env)
    # a second run with no state at all re-reads the whole topic and rewrites every window
    flow.stop()
    second_run = datetime.now(UTC)
    flow.start(env["work"] / "recovery-second-run")

    def all_rewritten():
        with db(env) as conn:
            return conn.execute("SELECT count(*) FROM metric_windows WHERE updated_at < %s",
                                (second_run,)).fetchone()[0] == 0

    wait_for(all_rewritten, 60, "the second run to rewrite every window")
    time.sleep(3)
    assert flow.alive()
    after = all_windows(env)
    assert [r[:2] for r in after] == [r[:2] for r in before_windows]  # no duplicate windows
    assert after == before_windows
    assert sla_rows(env) == before_sla
