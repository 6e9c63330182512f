"""Targets the console measures against, from the metrics flow's `flows/sla.yaml`
(SLA_CONFIG_FILE): first-response SLAs per channel, alert thresholds, business hours."""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache

import pandas as pd

from flows.sla import SlaConfig, is_business_hours, load_sla_config, next_business_opening
from fte.settings import get_settings
from schema.events import Channel

SENTIMENT_MIN = 0.0  # mean sentiment below neutral is worth a look


@lru_cache
def config() -> SlaConfig:
    path = get_settings().SLA_CONFIG_FILE
    return load_sla_config(path) if path.exists() else SlaConfig()


def escalation_rate_max() -> float:
    return config().alerts.escalation_rate


def p95_first_response_max_s() -> float:
    return config().alerts.first_response_p95_s


def first_response_targets_s(priority: str = "normal") -> dict[str, float]:
    return {ch.value: config().target(ch, priority).total_seconds() for ch in Channel}


def targets_frame(priority: str = "normal") -> pd.DataFrame:
    return pd.DataFrame([{"channel": ch, "target_s": s}
                         for ch, s in first_response_targets_s(priority).items()])


def business_hours_status(now: datetime) -> tuple[bool, datetime | None]:
    """(people working now, when they next start if not)."""
    if is_business_hours(now, config()):
        return True, None
    return False, next_business_opening(now, config())


def describe_hours() -> str:
    h = config().business_hours
    return f"{', '.join(d.title() for d in h.days)} {h.open:%H:%M}–{h.close:%H:%M} ({h.timezone})"
