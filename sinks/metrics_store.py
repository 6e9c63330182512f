"""Postgres writes of the metrics flow: windows, SLA events, alerts, dead letters.

Every write is idempotent, because Bytewax recovery re-emits what was produced since the
last snapshot:
- windows: contents are merged by event identity (jsonb `||`, a key union) under the row
  lock of the upsert, then the aggregate columns are recomputed from the merged contents;
- sla_events: unique (ticket_id, kind); a 'met' removes a breach the timer reported before
  the (late) reply event arrived; a breach is not recorded once a 'met' exists;
- alerts: one row per (kind, minute bucket), subjects merged into `detail.subjects`;
- dead_letters: unique per (source topic, partition, offset).

Each function takes an open connection and runs in the caller's transaction. The sinks
below give each worker one connection and commit once per batch (at-least-once delivery,
exactly-once effect).
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Generic, TypeVar

import psycopg
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from psycopg.types.json import Jsonb
from tenacity import retry, retry_if_exception_type, stop_after_attempt, wait_exponential

from flows.metric_windows import (
    WINDOW,
    WindowUpdate,
    contents_from_json,
    contents_to_json,
    summarize,
)
from flows.sla import SlaOutcome
from fte.logs import get_logger
from schema.events import Alert, Channel, DeadLetter, MetricWindow

log = get_logger(__name__)

X = TypeVar("X")

MERGE_WINDOW_CONTENTS = """
INSERT INTO metric_windows AS w (channel, window_start, window_end, contributions)
SELECT * FROM unnest(%(channels)s::text[], %(starts)s::timestamptz[], %(ends)s::timestamptz[],
                     %(contents)s::jsonb[])
ON CONFLICT (channel, window_start) DO UPDATE
    SET contributions = w.contributions || EXCLUDED.contributions
RETURNING channel, window_start, contributions
"""

SET_WINDOW_AGGREGATES = """
UPDATE metric_windows SET
    received = %(received)s, replied = %(replied)s, escalated = %(escalated)s,
    sent = %(sent)s, failed = %(failed)s,
    first_response_p50_ms = %(first_response_p50_ms)s,
    first_response_p95_ms = %(first_response_p95_ms)s,
    sentiment_mean = %(sentiment_mean)s, agent_tokens = %(agent_tokens)s,
    kb_lookups = %(kb_lookups)s, kb_hits = %(kb_hits)s, updated_at = now()
WHERE channel = %(channel)s AND window_start = %(window_start)s
"""

UPSERT_SLA_MET = """
INSERT INTO sla_events (ticket_id, channel, priority, kind, deadline, occurred_at, responded_at)
VALUES (%(ticket_id)s, %(channel)s, %(priority)s, 'met', %(deadline)s, %(occurred_at)s,
        %(responded_at)s)
ON CONFLICT (ticket_id, kind) DO UPDATE
    SET responded_at = LEAST(sla_events.responded_at, EXCLUDED.responded_at),
        occurred_at = LEAST(sla_events.occurred_at, EXCLUDED.occurred_at)
"""

# The timer fired before the reply's event arrived, but the reply was in time.
DELETE_SLA_BREACH_ANSWERED_IN_TIME = """
DELETE FROM sla_events WHERE ticket_id = %(ticket_id)s AND kind = 'breach'
    AND deadline >= %(responded_at)s
"""

UPSERT_SLA_BREACH = """
INSERT INTO sla_events (ticket_id, channel, priority, kind, deadline, occurred_at, responded_at)
SELECT %(ticket_id)s, %(channel)s, %(priority)s, 'breach', %(deadline)s, %(occurred_at)s,
       %(responded_at)s
WHERE NOT EXISTS (SELECT 1 FROM sla_events WHERE ticket_id = %(ticket_id)s AND kind = 'met')
ON CONFLICT (ticket_id, kind) DO UPDATE
    SET responded_at = coalesce(sla_events.responded_at, EXCLUDED.responded_at)
"""

# detail = {"subjects": {subject: {...}}}; sla_breach rows count breached tickets, the
# others keep the worst value seen in the minute.
UPSERT_ALERT = """
INSERT INTO alerts AS a (kind, bucket, value, threshold, detail, raised_at)
VALUES (%(kind)s, %(bucket)s, %(value)s, %(threshold)s, %(detail)s, %(raised_at)s)
ON CONFLICT (kind, bucket) DO UPDATE SET
    detail = jsonb_set(a.detail, '{subjects}',
                       coalesce(a.detail -> 'subjects', '{}') || (EXCLUDED.detail -> 'subjects')),
    value = CASE WHEN a.kind = 'sla_breach'
                 THEN (SELECT count(*) FROM jsonb_object_keys(
                          coalesce(a.detail -> 'subjects', '{}') || (EXCLUDED.detail -> 'subjects')))
                 ELSE greatest(a.value, EXCLUDED.value) END
"""

INSERT_DEAD_LETTER = """
INSERT INTO dead_letters (source_topic, "partition", "offset", msg_key, raw, reason, created_at)
VALUES (%(source_topic)s, %(partition)s, %(offset)s, %(msg_key)s, %(raw)s, %(reason)s,
        %(created_at)s)
ON CONFLICT (source_topic, "partition", "offset")
    WHERE "partition" IS NOT NULL AND "offset" IS NOT NULL DO NOTHING
"""


def write_windows(conn: psycopg.Connection, updates: Sequence[WindowUpdate]) -> list[MetricWindow]:
    """Merge window contents and recompute their aggregates; returns the stored windows."""
    if not updates:
        return []
    merged: dict[tuple[Channel, datetime], dict] = {}
    for u in updates:
        merged.setdefault((u.channel, u.window_start), {}).update(contents_to_json(u.contents))
    keys = sorted(merged, key=lambda k: (k[0].value, k[1]))  # one lock order: no deadlocks
    rows = conn.execute(MERGE_WINDOW_CONTENTS, {
        "channels": [k[0].value for k in keys],
        "starts": [k[1] for k in keys],
        "ends": [k[1] + WINDOW for k in keys],
        "contents": [Jsonb(merged[k]) for k in keys],
    }).fetchall()
    windows = [summarize(Channel(r[0]), r[1], contents_from_json(r[2])) for r in rows]
    with conn.cursor() as cur:
        cur.executemany(SET_WINDOW_AGGREGATES, [
            w.model_dump(include={
                "received", "replied", "escalated", "sent", "failed", "first_response_p50_ms",
                "first_response_p95_ms", "sentiment_mean", "agent_tokens", "kb_lookups", "kb_hits",
                "window_start"}) | {"channel": w.channel.value}
            for w in windows
        ])
    return windows


def _sla_params(o: SlaOutcome) -> dict:
    return {"ticket_id": o.ticket_id, "channel": o.channel.value, "priority": o.priority,
            "deadline": o.deadline, "occurred_at": o.occurred_at, "responded_at": o.responded_at}


def write_sla_outcomes(conn: psycopg.Connection, outcomes: Sequence[SlaOutcome]) -> None:
    met = [_sla_params(o) for o in outcomes if o.kind == "met"]
    breaches = [_sla_params(o) for o in outcomes if o.kind == "breach"]
    with conn.cursor() as cur:
        if met:
            cur.executemany(UPSERT_SLA_MET, met)
            cur.executemany(DELETE_SLA_BREACH_ANSWERED_IN_TIME, met)
        if breaches:
            cur.executemany(UPSERT_SLA_BREACH, breaches)


def alert_row(alert: Alert) -> dict:
    detail = dict(alert.detail)
    bucket = datetime.fromisoformat(detail.pop("bucket"))
    subject = str(detail.pop("subject", alert.kind))
    return {
        "kind": alert.kind,
        "bucket": bucket,
        "value": 1.0 if alert.kind == "sla_breach" else alert.value,
        "threshold": alert.threshold,
        "detail": Jsonb({"subjects": {subject: {"value": alert.value, **detail}}}),
        "raised_at": alert.raised_at,
    }


def write_alerts(conn: psycopg.Connection, alerts: Sequence[Alert]) -> None:
    if alerts:
        with conn.cursor() as cur:
            cur.executemany(UPSERT_ALERT, [alert_row(a) for a in alerts])


def write_dead_letters(conn: psycopg.Connection, dead: Sequence[DeadLetter]) -> None:
    if not dead:
        return
    with conn.cursor() as cur:
        cur.executemany(INSERT_DEAD_LETTER, [
            {"source_topic": d.source_topic, "partition": d.partition, "offset": d.offset,
             "msg_key": base64.b64decode(d.key_b64) if d.key_b64 is not None else None,
             "raw": d.raw, "reason": d.reason[:2000], "created_at": d.occurred_at}
            for d in dead
        ])


UPSERT_FLOW_PROGRESS = """
INSERT INTO flow_progress (flow, topic, "partition", next_offset)
VALUES (%(flow)s, %(topic)s, %(partition)s, %(next_offset)s)
ON CONFLICT (flow, topic, "partition") DO UPDATE
    SET next_offset = greatest(flow_progress.next_offset, EXCLUDED.next_offset), updated_at = now()
"""


def write_flow_progress(conn: psycopg.Connection, offsets: Sequence[tuple[str, str, int, int]]) -> None:
    """(flow, topic, partition, next offset) read, for the lag figures; the highest wins.

    Monitoring only (recovery resumes from Bytewax snapshots); skipped while the table
    (support flow's migration 004) does not exist.
    """
    highest: dict[tuple[str, str, int], int] = {}
    for flow, topic, partition, next_offset in offsets:
        key = (flow, topic, partition)
        highest[key] = max(next_offset, highest.get(key, 0))
    if not highest:
        return
    try:
        with conn.transaction(), conn.cursor() as cur:  # a savepoint: absence is not fatal
            cur.executemany(UPSERT_FLOW_PROGRESS, [
                {"flow": f, "topic": t, "partition": p, "next_offset": o} for (f, t, p), o in highest.items()
            ])
    except psycopg.errors.UndefinedTable:
        log.warning("metrics_store.no_flow_progress_table")


# --- Bytewax sinks --------------------------------------------------------------------------

class _PostgresPartition(StatelessSinkPartition[X], Generic[X]):
    def __init__(self, database_url: str, write: Callable[[psycopg.Connection, list[X]], object],
                 name: str):
        self._database_url = database_url
        self._write = write
        self._name = name
        self._conn: psycopg.Connection | None = None

    def _connection(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(self._database_url, connect_timeout=10)
        return self._conn

    @retry(retry=retry_if_exception_type(psycopg.OperationalError), stop=stop_after_attempt(5),
           wait=wait_exponential(multiplier=0.2, max=5), reraise=True)
    def write_batch(self, items: list[X]) -> None:
        """Returns once the batch is committed; a lost connection is retried, then raised
        (the flow stops and resumes from its last snapshot)."""
        conn = self._connection()
        try:
            with conn.transaction():
                self._write(conn, items)
        except psycopg.OperationalError:
            log.warning("metrics_store.write_retry", sink=self._name, items=len(items))
            conn.close()
            raise

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()


class PostgresSink(DynamicSink[X], Generic[X]):
    """Writes each batch with `write(conn, items)` in one transaction per worker."""

    def __init__(self, database_url: str, write: Callable[[psycopg.Connection, list[X]], object],
                 name: str = "postgres"):
        self.database_url = database_url
        self.write = write
        self.name = name

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _PostgresPartition[X]:
        return _PostgresPartition(self.database_url, self.write, self.name)


def window_sink(database_url: str) -> PostgresSink[WindowUpdate]:
    return PostgresSink(database_url, write_windows, "metric_windows")


def sla_sink(database_url: str) -> PostgresSink[SlaOutcome]:
    return PostgresSink(database_url, write_sla_outcomes, "sla_events")


def alert_sink(database_url: str) -> PostgresSink[Alert]:
    return PostgresSink(database_url, write_alerts, "alerts")


def dead_letter_sink(database_url: str) -> PostgresSink[DeadLetter]:
    return PostgresSink(database_url, write_dead_letters, "dead_letters")



def progress_sink(database_url: str) -> PostgresSink[tuple[str, str, int, int]]:
    return PostgresSink(database_url, write_flow_progress, "flow_progress")
