"""Alert rules: pure functions from window aggregates, health samples and SLA breaches to
`Alert`s.

Every alert carries `detail.bucket` (the minute it belongs to) and `detail.subject`
(channel, flow or ticket): the store keeps one row per (kind, bucket) and merges the
subjects into it, so replays and several channels in one minute never duplicate a row.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from flows.sla import AlertThresholds, SlaOutcome
from schema.events import Alert, MetricWindow


def minute_bucket(ts: datetime) -> datetime:
    return ts.astimezone(UTC).replace(second=0, microsecond=0)


def _detail(bucket: datetime, subject: str, **extra) -> dict:
    return {"bucket": bucket.isoformat(), "subject": subject, **extra}


def window_alerts(window: MetricWindow, limits: AlertThresholds, now: datetime) -> list[Alert]:
    """Escalation rate and p95 first response of one closed channel window."""
    alerts: list[Alert] = []
    bucket = minute_bucket(window.window_start)
    channel = window.channel.value
    handled = window.replied + window.escalated
    if handled >= limits.escalation_min_handled and window.escalation_rate > limits.escalation_rate:
        alerts.append(Alert(
            kind="escalation_rate", value=round(window.escalation_rate, 4),
            threshold=limits.escalation_rate, raised_at=now,
            detail=_detail(bucket, channel, escalated=window.escalated, handled=handled),
        ))
    p95_s = (window.first_response_p95_ms or 0.0) / 1000.0
    if window.first_response_p95_ms is not None and p95_s > limits.first_response_p95_s:
        alerts.append(Alert(
            kind="first_response_p95", value=round(p95_s, 3),
            threshold=limits.first_response_p95_s, raised_at=now,
            detail=_detail(bucket, channel, p50_s=round((window.first_response_p50_ms or 0) / 1000, 3)),
        ))
    return alerts


@dataclass(frozen=True)
class PartitionLag:
    flow: str
    topic: str
    partition: int
    next_offset: int
    high_watermark: int

    @property
    def lag(self) -> int:
        return max(0, self.high_watermark - self.next_offset)


@dataclass(frozen=True)
class HealthSample:
    """One poll of consumer progress and the dead-letter table."""

    at: datetime
    lags: tuple[PartitionLag, ...] = ()
    dead_letters_new: int = 0
    dead_letters_last_id: int = 0
    progress_available: bool = True  # False while flow_progress does not exist yet
    errors: tuple[str, ...] = field(default=())

    def lag_by_flow(self) -> dict[str, int]:
        totals: dict[str, int] = {}
        for p in self.lags:
            totals[p.flow] = totals.get(p.flow, 0) + p.lag
        return totals


def health_alerts(sample: HealthSample, limits: AlertThresholds) -> list[Alert]:
    alerts: list[Alert] = []
    bucket = minute_bucket(sample.at)
    for flow, lag in sorted(sample.lag_by_flow().items()):
        if lag > limits.consumer_lag:
            partitions = {f"{p.topic}[{p.partition}]": p.lag for p in sample.lags if p.flow == flow}
            alerts.append(Alert(
                kind="consumer_lag", value=float(lag), threshold=float(limits.consumer_lag),
                raised_at=sample.at, detail=_detail(bucket, flow, partitions=partitions),
            ))
    if sample.dead_letters_new > limits.dead_letters_new:
        alerts.append(Alert(
            kind="dead_letters", value=float(sample.dead_letters_new),
            threshold=float(limits.dead_letters_new), raised_at=sample.at,
            detail=_detail(bucket, "dead_letters", last_id=sample.dead_letters_last_id),
        ))
    return alerts


def breach_alert(outcome: SlaOutcome, now: datetime) -> Alert | None:
    if not outcome.raises_alert:
        return None
    overdue_s = max(0.0, (now - outcome.deadline).total_seconds())
    return Alert(
        kind="sla_breach", value=round(overdue_s, 3), threshold=0.0, raised_at=now,
        detail=_detail(
            minute_bucket(outcome.deadline), outcome.ticket_id,
            channel=outcome.channel.value, priority=outcome.priority,
            deadline=outcome.deadline.isoformat(),
        ),
    )
