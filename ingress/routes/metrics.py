"""GET /metrics/channels (windowed metrics from Postgres) and GET /metrics (Prometheus)."""

from __future__ import annotations

from fastapi import APIRouter, Query, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ingress.deps import ServicesDep
from ingress.models import ChannelMetrics, ChannelMetricsPublic
from ingress.operator_auth import Viewer

# Operators only (role viewer); Prometheus scrapes /metrics with an API key as bearer token.
router = APIRouter(tags=["metrics"], dependencies=[Viewer])

_CHANNELS = """
SELECT channel,
       count(*)::int                      AS windows,
       coalesce(sum(received), 0)::int    AS received,
       coalesce(sum(replied), 0)::int     AS replied,
       coalesce(sum(escalated), 0)::int   AS escalated,
       coalesce(sum(sent), 0)::int        AS sent,
       coalesce(sum(failed), 0)::int      AS failed,
       max(first_response_p95_ms)         AS first_response_p95_ms,
       sum(sentiment_mean * received) / nullif(sum(received) FILTER (WHERE sentiment_mean IS NOT NULL), 0)
                                          AS sentiment_mean,
       coalesce(sum(agent_tokens), 0)::int AS agent_tokens,
       sum(kb_hits)::float / nullif(sum(kb_lookups), 0) AS kb_hit_rate,
       max(window_start)                  AS last_window_start
FROM metric_windows
WHERE window_start >= now() - make_interval(mins => %s)
GROUP BY channel ORDER BY channel
"""


@router.get("/metrics/channels", response_model=ChannelMetricsPublic,
            summary="Per-channel totals over the last N minutes of 1-minute windows")
async def read_channel_metrics(services: ServicesDep,
                               minutes: int = Query(60, ge=1, le=7 * 24 * 60)) -> ChannelMetricsPublic:
    async with services.db.connection() as conn:
        rows = await (await conn.execute(_CHANNELS, (minutes,))).fetchall()
    data = []
    for row in rows:
        handled = row["replied"] + row["escalated"]
        data.append(ChannelMetrics(**row, escalation_rate=row["escalated"] / handled if handled else 0.0))
    return ChannelMetricsPublic(minutes=minutes, data=data, count=len(data))


@router.get("/metrics", include_in_schema=False)
def read_prometheus_metrics() -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
