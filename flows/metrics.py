"""The metrics dataflow: support events -> 1-minute channel windows, SLA timers, alerts.

Runs in its own process (`fte metrics-flow`) so slow agent calls in the support flow never
delay its timers. Shape:

    support.events ─ parse ─┬─ invalid ──────────────────────> deadletter topic + table
                            ├─ by ticket: SLA timers ────────> sla_events (+ breach alerts)
                            └─ by inbound: de-duplicate ─ by channel: 1-min event-time windows
                                   closed windows + late facts ─> metric_windows (merged)
                                   closed windows ──────────────> rate / p95 alerts
    health poll (lag, dead letters) ───────────────────────────> alerts
    alerts ─> alerts table + support.alerts

Windows use event time (`occurred_at`) with a wall-clock watermark (`WallClockWatermark`):
a window closes `lateness` after its end by the wall clock, with or without traffic.
Events older than the watermark (pipeline delays, replays, a backlog after downtime) come
out as late facts and are merged into the stored window (see sinks/metrics_store.py), so
nothing is dropped or double counted.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import bytewax.operators as op
from bytewax.connectors.kafka import (
    KafkaError,
    KafkaSink,
    KafkaSinkMessage,
    KafkaSource,
    KafkaSourceMessage,
)
from bytewax.dataflow import Dataflow
from bytewax.inputs import Source
from bytewax.operators import StatefulLogic
from bytewax.operators.windowing import Clock, ClockLogic, TumblingWindower, fold_window
from bytewax.outputs import Sink

from flows.alerts import HealthSample, breach_alert, health_alerts, window_alerts
from flows.bucketed import BucketedLogic, bucket_of
from flows.metric_windows import (
    EPOCH,
    WINDOW,
    Fact,
    InboundSeen,
    WindowUpdate,
    add_fact,
    empty_contents,
    fact_time,
    facts_for,
    merge_contents,
    summarize,
    window_start_of,
    window_start_of_id,
)
from flows.sla import (
    SlaConfig,
    SlaLogic,
    SlaOutcome,
    is_first_response,
    is_priority_raise,
    is_ticket_opened,
)
from schema.events import Alert, Channel, DeadLetter, SupportEvent, describe_error, parse_event

FLOW_NAME = "metrics"
MAX_EVENT_BYTES = 64 * 1024


def _utcnow() -> datetime:
    return datetime.now(UTC)


# --- pure steps -----------------------------------------------------------------------------

def parse_message(msg: KafkaSourceMessage | KafkaError, source_topic: str) -> SupportEvent | DeadLetter:
    """A valid SupportEvent, or the dead letter saying why not."""
    if isinstance(msg, KafkaError):
        m = msg.msg
        return DeadLetter.for_raw(source_topic=m.topic or source_topic, raw=m.value, key=m.key,
                                  partition=m.partition, offset=m.offset,
                                  reason=f"kafka error: {msg.err}")
    where = {"source_topic": msg.topic or source_topic, "raw": msg.value, "key": msg.key,
             "partition": msg.partition, "offset": msg.offset}
    if not msg.value:
        return DeadLetter.for_raw(reason="empty message", **where)
    if len(msg.value) > MAX_EVENT_BYTES:
        return DeadLetter.for_raw(reason=f"message larger than {MAX_EVENT_BYTES} bytes", **where)
    try:
        return parse_event(SupportEvent, msg.value)
    except Exception as exc:  # noqa: BLE001 -- every decoding failure becomes a dead letter
        return DeadLetter.for_raw(reason=describe_error(exc), **where)


def read_offset(msg: KafkaSourceMessage | KafkaError) -> tuple[str, str, int, int] | None:
    if isinstance(msg, KafkaSourceMessage) and msg.topic and msg.partition is not None \
            and msg.offset is not None and msg.offset >= 0:
        return (FLOW_NAME, msg.topic, msg.partition, msg.offset + 1)
    return None


def dead_letter_message(dead: DeadLetter) -> KafkaSinkMessage[bytes, bytes]:
    return KafkaSinkMessage(key=dead.source_topic.encode(), value=dead.to_bytes())


def alert_message(alert: Alert) -> KafkaSinkMessage[bytes, bytes]:
    return KafkaSinkMessage(key=alert.kind.encode(), value=alert.to_bytes())


def closed_update(item: tuple[str, tuple[int, dict]]) -> WindowUpdate:
    channel, (window_id, contents) = item
    return WindowUpdate(Channel(channel), window_start_of_id(window_id), contents, closed=True)


def late_updates(item: tuple[str, list[tuple[int, Fact]]]) -> list[WindowUpdate]:
    """Late facts collected for a channel, one update per window they belong to."""
    channel, late = item
    by_window: dict[datetime, dict] = {}
    for _window_id, fact in late:
        by_window.setdefault(window_start_of(fact.occurred_at), {})[fact.key] = fact.contribution
    return [WindowUpdate(Channel(channel), start, contents, closed=False)
            for start, contents in sorted(by_window.items())]


# --- the watermark ----------------------------------------------------------------------------

@dataclass
class _WallClockLogic(ClockLogic[Fact, datetime]):
    now_getter: Callable[[], datetime]
    lateness: timedelta
    watermark: datetime  # never moves back, also across a resume

    def _advance(self) -> datetime:
        self.watermark = max(self.watermark, self.now_getter() - self.lateness)
        return self.watermark

    def before_batch(self) -> None:
        self._advance()

    def on_item(self, value: Fact) -> tuple[datetime, datetime]:
        return fact_time(value), self.watermark

    def on_notify(self) -> datetime:
        return self._advance()

    def on_eof(self) -> datetime:
        return self._advance()  # windows still close by the wall clock on a later resume

    def to_system_utc(self, timestamp: datetime) -> datetime | None:
        return timestamp + self.lateness

    def snapshot(self) -> datetime:
        return self.watermark


@dataclass
class WallClockWatermark(Clock[Fact, datetime]):
    """Event time for window membership, wall clock - `lateness` for the watermark.

    Bytewax's EventClock derives the watermark from the newest event *per key* and forgets
    it once a key's windows are all closed, so an old event for an idle channel would open
    a fresh window and hold it for up to a minute. Here support events are stamped by the
    services that emit them, so the wall clock is the better bound: a window closes
    `lateness` after its end, and anything older is merged in as late.
    """

    lateness: timedelta
    now_getter: Callable[[], datetime] = _utcnow

    def build(self, resume_state: datetime | None) -> _WallClockLogic:
        start = resume_state or (self.now_getter() - self.lateness)
        return _WallClockLogic(self.now_getter, self.lateness, start)


# --- stateful: de-duplication per inbound message ---------------------------------------------

class DedupeLogic(StatefulLogic[SupportEvent, Fact, tuple[InboundSeen, datetime]]):
    """Counts each event kind once per inbound message; forgotten `ttl` after the last event."""

    def __init__(self, resume: tuple[InboundSeen, datetime] | None, ttl: timedelta,
                 now_getter: Callable[[], datetime]):
        self.seen, self.forget_at = resume or (InboundSeen(), now_getter() + ttl)
        self.ttl = ttl
        self.now = now_getter

    def on_item(self, value: SupportEvent) -> tuple[Iterable[Fact], bool]:
        self.seen, facts = facts_for(self.seen, value)
        self.forget_at = self.now() + self.ttl
        return facts, StatefulLogic.RETAIN

    def on_notify(self) -> tuple[Iterable[Fact], bool]:
        return (), StatefulLogic.DISCARD

    def notify_at(self) -> datetime | None:
        return self.forget_at

    def snapshot(self) -> tuple[InboundSeen, datetime]:
        return self.seen, self.forget_at


# --- wiring -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class MetricsSinks:
    windows: Sink[WindowUpdate]
    sla: Sink[SlaOutcome]
    alerts: Sink[Alert]
    alerts_topic: Sink[KafkaSinkMessage]
    dead_letters: Sink[DeadLetter]
    dead_letters_topic: Sink[KafkaSinkMessage]
    # (flow, topic, partition, next offset) of what was read, for the lag figures
    progress: Sink[tuple[str, str, int, int]] | None = None


def build_flow(
    events: Source[Any],
    sinks: MetricsSinks,
    config: SlaConfig,
    *,
    source_topic: str,
    lateness: timedelta = timedelta(seconds=10),
    dedupe_ttl: timedelta = timedelta(hours=1),
    late_batch_wait: timedelta = timedelta(seconds=1),
    health: Source[HealthSample] | None = None,
    now_getter: Callable[[], datetime] = _utcnow,
    observe: Callable[[str, Any], None] | None = None,
) -> Dataflow:
    """`events` yields KafkaSourceMessage / KafkaError items of the support events topic;
    `observe(what, item)`, when given, sees each valid event ("in"), window and alert ("out")."""
    flow = Dataflow(FLOW_NAME)
    raw = op.input("events_in", flow, events)
    if sinks.progress is not None:
        op.output("progress_db", op.filter_map("read_offset", raw, read_offset), sinks.progress)
    parsed = op.map("parse", raw, lambda m: parse_message(m, source_topic))
    valid = op.branch("is_valid", parsed, lambda x: isinstance(x, SupportEvent))
    # DeadLetter
    op.output("dead_letters_db", valid.falses, sinks.dead_letters)
    op.output("dead_letters_topic", op.map("dead_letter_msg", valid.falses, dead_letter_message),
              sinks.dead_letters_topic)
    events_ok = valid.trues  # SupportEvent
    if observe is not None:
        op.inspect("observe_in", events_ok, lambda _step, e: observe("in", e))

    # (bucket, (ticket_id, SupportEvent)) -> SlaOutcome
    sla_in = op.filter("sla_relevant", events_ok,
                       lambda e: is_ticket_opened(e) or is_first_response(e) or is_priority_raise(e))
    # One timer per ticket, held in a bounded number of Bytewax keys (see flows/bucketed.py)
    outcomes = op.stateful(
        "sla_buckets",
        op.key_on("by_ticket_bucket", op.map("with_ticket", sla_in, lambda e: (e.ticket_id, e)),
                  lambda kv: bucket_of(kv[0])),
        lambda resume: BucketedLogic(lambda inner: SlaLogic(config, inner, now_getter), resume, now_getter))
    outcomes = op.map("sla_outcome", outcomes, lambda kv: kv[1])
    op.output("sla_db", outcomes, sinks.sla)
    sla_alerts = op.filter_map("breach_alert", outcomes, lambda o: breach_alert(o, now_getter()))

    # (bucket, (inbound_key, SupportEvent)) -> Fact, once per (kind, inbound message)
    facts = op.stateful(
        "dedupe_buckets",
        op.key_on("by_inbound_bucket", op.map("with_inbound", events_ok, lambda e: (e.inbound_key, e)),
                  lambda kv: bucket_of(kv[0])),
        lambda resume: BucketedLogic(lambda inner: DedupeLogic(inner, dedupe_ttl, now_getter),
                                     resume, now_getter))
    # (channel, Fact)
    by_channel = op.key_on("by_channel", op.map("fact", facts, lambda kv: kv[1]),
                           lambda f: f.channel.value)
    windows = fold_window(
        "minute_windows", by_channel,
        WallClockWatermark(lateness, now_getter),
        TumblingWindower(length=WINDOW, align_to=EPOCH),
        empty_contents, add_fact, merge_contents,
        ordered=False,  # contents merge by key, so arrival order does not matter
    )
    closed = op.map("closed_window", windows.down, closed_update)
    # A backlog (after downtime, or a replay) is all late: collect it for a moment so the
    # store merges one update per window rather than one per event.
    late_batches = op.collect("collect_late", windows.late, timeout=late_batch_wait, max_size=5000)
    late = op.flat_map("late_facts", late_batches, late_updates)
    updates = op.merge("window_updates", closed, late)
    op.output("windows_db", updates, sinks.windows)
    rate_alerts = op.flat_map(
        "window_alerts", closed,
        lambda u: window_alerts(summarize(u.channel, u.window_start, u.contents), config.alerts, now_getter()),
    )

    streams = [sla_alerts, rate_alerts]
    if health is not None:
        samples = op.input("health_in", flow, health)
        streams.append(op.flat_map("health_alerts", samples, lambda s: health_alerts(s, config.alerts)))
    alerts = op.merge("alerts", *streams)
    if observe is not None:
        op.inspect("observe_out", op.merge("observed_out", updates, alerts),
                   lambda _step, x: observe("out", x))
    op.output("alerts_db", alerts, sinks.alerts)
    op.output("alerts_topic", op.map("alert_msg", alerts, alert_message), sinks.alerts_topic)
    return flow


def build_kafka_flow(settings, config: SlaConfig) -> Dataflow:
    """The production wiring: Kafka in and out, Postgres sinks, the health poll."""
    from flows.health import HealthSource
    from flows.paced_input import PacedSource
    from schema.topics import ALERTS, DEADLETTER, SUPPORT_EVENTS, topic_name
    from sinks.metrics_store import (
        alert_sink,
        dead_letter_sink,
        progress_sink,
        sla_sink,
        window_sink,
    )

    brokers = [settings.kafka_bootstrap]
    prefix = settings.TOPIC_PREFIX
    events_topic = topic_name(SUPPORT_EVENTS, prefix)
    producer_config = {"enable.idempotence": "true", "acks": "all", "linger.ms": "5"}
    sinks = MetricsSinks(
        windows=window_sink(settings.database_url),
        sla=sla_sink(settings.database_url),
        alerts=alert_sink(settings.database_url),
        alerts_topic=KafkaSink(brokers, topic_name(ALERTS, prefix), add_config=producer_config),
        dead_letters=dead_letter_sink(settings.database_url),
        dead_letters_topic=KafkaSink(brokers, topic_name(DEADLETTER, prefix), add_config=producer_config),
        progress=progress_sink(settings.database_url),
    )
    # Paced: Bytewax would otherwise poll it every millisecond and spin while an epoch ends.
    source = PacedSource(KafkaSource(brokers, [events_topic], raise_on_errors=False,
                                     batch_size=settings.METRICS_BATCH_SIZE),
                         batch_size=settings.METRICS_BATCH_SIZE)
    health = HealthSource(settings.database_url, settings.kafka_bootstrap, config.alerts.health_poll)
    return build_flow(
        source, sinks, config,
        source_topic=events_topic,
        lateness=timedelta(seconds=settings.METRICS_ALLOWED_LATENESS_S),
        dedupe_ttl=timedelta(seconds=settings.METRICS_DEDUPE_TTL_S),
        health=health,
        observe=observe_metrics_flow,
    )


def observe_metrics_flow(what: str, item: Any) -> None:
    """The metrics flow's own Prometheus figures: events in per channel, windows and alerts out."""
    from fte import observability

    if what == "in":
        observability.MESSAGES_IN.labels("metrics-flow", item.channel.value).inc()
    elif isinstance(item, Alert):
        observability.MESSAGES_OUT.labels("metrics-flow", "none", f"alert_{item.kind}").inc()
    else:
        observability.MESSAGES_OUT.labels("metrics-flow", item.channel.value, "window").inc()
