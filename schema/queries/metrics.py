"""Typed reads over what the metrics flow stores (metric_windows, sla_events, alerts).

SQL constants with bound parameters; each function takes any psycopg connection (whatever
its row factory) and returns frozen dataclasses. Percentiles over several windows are exact:
they are computed from the latencies kept in `metric_windows.contributions`, with the same
interpolation as the flow (`percentile_cont`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row

KPIS = """
WITH w AS (
    SELECT * FROM metric_windows
    WHERE window_start >= %(since)s AND window_start < coalesce(%(until)s, now())
      AND (%(channel)s::text IS NULL OR channel = %(channel)s)
), c AS (
    SELECT e.value AS v FROM w, jsonb_each(w.contributions) AS e
), totals AS (
    SELECT coalesce(sum(received), 0) AS received, coalesce(sum(replied), 0) AS replied,
           coalesce(sum(escalated), 0) AS escalated, coalesce(sum(sent), 0) AS sent,
           coalesce(sum(failed), 0) AS failed, coalesce(sum(agent_tokens), 0) AS agent_tokens,
           coalesce(sum(kb_lookups), 0) AS kb_lookups, coalesce(sum(kb_hits), 0) AS kb_hits
    FROM w
), sla AS (
    SELECT count(*) FILTER (WHERE kind = 'met') AS sla_met,
           count(*) FILTER (WHERE kind = 'breach') AS sla_breached
    FROM sla_events
    WHERE occurred_at >= %(since)s AND occurred_at < coalesce(%(until)s, now())
      AND (%(channel)s::text IS NULL OR channel = %(channel)s)
)
SELECT totals.*, sla.*,
       (SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY (v ->> 'l')::float8)
          FROM c WHERE v ->> 'k' = 'first_response' AND v ? 'l') / 1000.0 AS first_response_p50_s,
       (SELECT percentile_cont(0.95) WITHIN GROUP (ORDER BY (v ->> 'l')::float8)
          FROM c WHERE v ->> 'k' = 'first_response' AND v ? 'l') / 1000.0 AS first_response_p95_s,
       (SELECT avg((v ->> 's')::float8) FROM c WHERE v ? 's') AS sentiment_mean
FROM totals, sla
"""

FIRST_RESPONSE_SERIES = """
SELECT channel, window_start, first_response_p50_ms / 1000.0 AS p50_s,
       first_response_p95_ms / 1000.0 AS p95_s
FROM metric_windows
WHERE window_start >= %(since)s AND window_start < coalesce(%(until)s, now())
  AND first_response_p95_ms IS NOT NULL
ORDER BY window_start, channel
"""

VOLUME_SERIES = """
SELECT channel, window_start, received, replied, escalated, sent, failed,
       CASE WHEN replied + escalated > 0
            THEN escalated::float8 / (replied + escalated) END AS escalation_rate,
       sentiment_mean,
       CASE WHEN kb_lookups > 0 THEN kb_hits::float8 / kb_lookups END AS kb_hit_rate
FROM metric_windows
WHERE window_start >= %(since)s AND window_start < coalesce(%(until)s, now())
ORDER BY window_start, channel
"""

RECENT_BREACHES = """
SELECT ticket_id, channel, priority, deadline, responded_at, recorded_at
FROM sla_events
WHERE kind = 'breach' AND (%(channel)s::text IS NULL OR channel = %(channel)s)
ORDER BY occurred_at DESC
LIMIT %(limit)s
"""

SLA_SUMMARY = """
SELECT channel,
       count(*) FILTER (WHERE kind = 'met') AS met,
       count(*) FILTER (WHERE kind = 'breach') AS breached
FROM sla_events
WHERE occurred_at >= %(since)s
GROUP BY channel
ORDER BY channel
"""

RECENT_ALERTS = """
SELECT kind, bucket, value, threshold, detail, raised_at
FROM alerts
WHERE (%(kind)s::text IS NULL OR kind = %(kind)s)
ORDER BY raised_at DESC, id DESC
LIMIT %(limit)s
"""


@dataclass(frozen=True)
class Kpis:
    received: int
    replied: int
    escalated: int
    sent: int
    failed: int
    agent_tokens: int
    kb_lookups: int
    kb_hits: int
    sla_met: int
    sla_breached: int
    first_response_p50_s: float | None
    first_response_p95_s: float | None
    sentiment_mean: float | None

    @property
    def escalation_rate(self) -> float:
        handled = self.replied + self.escalated
        return self.escalated / handled if handled else 0.0

    @property
    def kb_hit_rate(self) -> float | None:
        return self.kb_hits / self.kb_lookups if self.kb_lookups else None

    @property
    def sla_met_rate(self) -> float | None:
        total = self.sla_met + self.sla_breached
        return self.sla_met / total if total else None


@dataclass(frozen=True)
class LatencyPoint:
    channel: str
    window_start: datetime
    p50_s: float | None
    p95_s: float | None


@dataclass(frozen=True)
class VolumePoint:
    channel: str
    window_start: datetime
    received: int
    replied: int
    escalated: int
    sent: int
    failed: int
    escalation_rate: float | None
    sentiment_mean: float | None
    kb_hit_rate: float | None


@dataclass(frozen=True)
class Breach:
    ticket_id: str
    channel: str
    priority: str
    deadline: datetime
    responded_at: datetime | None
    recorded_at: datetime


@dataclass(frozen=True)
class SlaChannelSummary:
    channel: str
    met: int
    breached: int

    @property
    def met_rate(self) -> float | None:
        total = self.met + self.breached
        return self.met / total if total else None


@dataclass(frozen=True)
class AlertRow:
    kind: str
    bucket: datetime
    value: float
    threshold: float
    detail: dict[str, Any]
    raised_at: datetime


def _rows(conn: psycopg.Connection, sql: str, params: dict) -> list[dict]:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(sql, params).fetchall()


def kpis(conn: psycopg.Connection, *, since: datetime, until: datetime | None = None,
         channel: str | None = None) -> Kpis:
    """Totals since `since` (e.g. midnight in the business timezone), all or one channel."""
    (row,) = _rows(conn, KPIS, {"since": since, "until": until, "channel": channel})
    return Kpis(**{k: int(v) if k in _INT_KPIS else v for k, v in row.items()})


_INT_KPIS = {"received", "replied", "escalated", "sent", "failed", "agent_tokens", "kb_lookups",
             "kb_hits", "sla_met", "sla_breached"}


def first_response_series(conn: psycopg.Connection, *, since: datetime,
                          until: datetime | None = None) -> list[LatencyPoint]:
    """p50/p95 first response per channel and minute (windows with at least one response)."""
    return [LatencyPoint(**r) for r in _rows(conn, FIRST_RESPONSE_SERIES, {"since": since, "until": until})]


def volume_series(conn: psycopg.Connection, *, since: datetime,
                  until: datetime | None = None) -> list[VolumePoint]:
    return [VolumePoint(**r) for r in _rows(conn, VOLUME_SERIES, {"since": since, "until": until})]


def recent_breaches(conn: psycopg.Connection, *, limit: int = 50,
                    channel: str | None = None) -> list[Breach]:
    return [Breach(**r) for r in _rows(conn, RECENT_BREACHES, {"limit": limit, "channel": channel})]


def sla_summary(conn: psycopg.Connection, *, since: datetime) -> list[SlaChannelSummary]:
    return [SlaChannelSummary(r["channel"], int(r["met"]), int(r["breached"]))
            for r in _rows(conn, SLA_SUMMARY, {"since": since})]


def recent_alerts(conn: psycopg.Connection, *, limit: int = 20, kind: str | None = None) -> list[AlertRow]:
    return [AlertRow(**r) for r in _rows(conn, RECENT_ALERTS, {"limit": limit, "kind": kind})]
