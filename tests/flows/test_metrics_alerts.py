"""Alert thresholds, without a broker."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from flows.alerts import HealthSample, PartitionLag, breach_alert, health_alerts, window_alerts
from flows.sla import AlertThresholds, SlaOutcome
from schema.events import Channel, MetricWindow

T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
LIMITS = AlertThresholds()


def window(**kw) -> MetricWindow:
    return MetricWindow(channel=Channel.WEB, window_start=T0, window_end=T0 + timedelta(minutes=1), **kw)


def test_escalation_rate_above_25_percent_alerts():
    (alert,) = window_alerts(window(replied=2, escalated=2), LIMITS, T0)
    assert alert.kind == "escalation_rate" and alert.value == 0.5 and alert.threshold == 0.25
    assert alert.detail["subject"] == "web" and alert.detail["bucket"] == T0.isoformat()


def test_escalation_rate_at_threshold_or_too_few_messages_does_not_alert():
    assert window_alerts(window(replied=3, escalated=1), LIMITS, T0) == []  # exactly 25 %
    assert window_alerts(window(replied=1, escalated=2), LIMITS, T0) == []  # 3 handled < 4


def test_p95_first_response_above_3_seconds_alerts():
    (alert,) = window_alerts(window(first_response_p95_ms=3200.0, first_response_p50_ms=900.0), LIMITS, T0)
    assert alert.kind == "first_response_p95" and alert.value == 3.2
    assert window_alerts(window(first_response_p95_ms=3000.0), LIMITS, T0) == []


def test_consumer_lag_above_100_per_flow_alerts():
    lags = (PartitionLag("support", "channel.web.inbound", 0, 10, 70),
            PartitionLag("support", "channel.web.inbound", 1, 0, 41),
            PartitionLag("other", "x", 0, 0, 100))
    (alert,) = health_alerts(HealthSample(at=T0, lags=lags), LIMITS)
    assert alert.kind == "consumer_lag" and alert.value == 101 and alert.detail["subject"] == "support"
    assert alert.detail["partitions"] == {"channel.web.inbound[0]": 60, "channel.web.inbound[1]": 41}


def test_new_dead_letters_alert():
    assert health_alerts(HealthSample(at=T0), LIMITS) == []
    (alert,) = health_alerts(HealthSample(at=T0, dead_letters_new=2, dead_letters_last_id=9), LIMITS)
    assert alert.kind == "dead_letters" and alert.value == 2


def test_breach_alert_only_for_new_breaches():
    outcome = SlaOutcome("T-1", Channel.EMAIL, "high", "breach", T0, T0)
    alert = breach_alert(outcome, T0 + timedelta(seconds=3))
    assert alert.kind == "sla_breach" and alert.detail["subject"] == "T-1" and alert.value == 3.0
    assert breach_alert(SlaOutcome("T-1", Channel.EMAIL, "high", "met", T0, T0, T0), T0) is None
    update = SlaOutcome("T-1", Channel.EMAIL, "high", "breach", T0, T0, T0, announce=False)
    assert breach_alert(update, T0) is None
