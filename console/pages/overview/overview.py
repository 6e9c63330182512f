"""Overview: today's KPIs against their targets and the last two hours of traffic, live."""

from datetime import UTC, datetime, timedelta

import streamlit as st

from console import charts, data, targets
from console.session import require_login

require_login()
st.title("Overview")


def _fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


@st.fragment(run_every="5s")
def live() -> None:
    k = data.kpis_today()
    handled = (k.get("answered") or 0) + (k.get("escalated") or 0)
    rate = (k.get("escalated") or 0) / handled if handled else 0.0
    # Tickets' first responses; the metrics windows' p95 until tickets have any.
    p95 = k.get("p95_first_response_s")
    if p95 is None:
        p95 = k.get("window_p95_s")
    sentiment = k.get("sentiment_mean")

    cols = st.columns(6)
    cols[0].metric("Messages today", f"{k.get('volume') or 0:,}", delta="since 00:00 UTC",
                   delta_color="off", delta_arrow="off", border=True)
    cols[1].metric("Escalation rate", f"{rate:.0%}",
                   delta=f"target ≤ {targets.escalation_rate_max():.0%}",
                   delta_color="normal" if rate <= targets.escalation_rate_max() else "inverse",
                   delta_arrow="off", border=True)
    p95_ok = p95 is None or p95 <= targets.p95_first_response_max_s()
    cols[2].metric("p95 first response", _fmt_duration(p95),
                   delta=f"target ≤ {targets.p95_first_response_max_s():.0f} s",
                   delta_color="normal" if p95_ok else "inverse", delta_arrow="off", border=True)
    breaches = k.get("sla_breaches") or 0
    cols[3].metric("SLA breaches today", breaches, delta="target 0",
                   delta_color="normal" if breaches == 0 else "inverse", delta_arrow="off", border=True)
    cols[4].metric("Open escalations", k.get("open_escalations") or 0,
                   delta=f"oldest {_fmt_duration(k.get('oldest_open_s'))}" if k.get("open_escalations") else "none waiting",
                   delta_color="off", delta_arrow="off", border=True)
    has_sentiment = sentiment is not None
    cols[5].metric("Mean sentiment", f"{sentiment:+.2f}" if has_sentiment else "–",
                   delta=f"target ≥ {targets.SENTIMENT_MIN:+.1f}",
                   delta_color="normal" if not has_sentiment or sentiment >= targets.SENTIMENT_MIN else "inverse",
                   delta_arrow="off", border=True)

    left, right = st.columns([3, 2])
    with left:
        st.subheader("Messages a minute, last hour")
        volume = data.volume_since(1)
        if volume.empty:
            st.info("No metric windows yet: they appear once the metrics flow has seen traffic.")
        else:
            now = datetime.now(UTC)
            st.altair_chart(charts.volume_per_minute(volume, now - timedelta(hours=1), now), width="stretch")
    with right:
        st.subheader("Recent alerts")
        alerts = data.recent_alerts(8)
        if alerts.empty:
            st.success("No alerts.")
        else:
            st.dataframe(alerts[["raised_at", "kind", "value", "threshold"]], hide_index=True,
                         width="stretch",
                         column_config={"raised_at": st.column_config.DatetimeColumn("when", format="HH:mm:ss"),
                                        "value": st.column_config.NumberColumn(format="%.2f"),
                                        "threshold": st.column_config.NumberColumn(format="%.2f")})
    mix, reasons = st.columns(2)
    with mix:
        st.subheader("Messages today by channel")
        by_channel = data.inbound_by_channel_today()
        if by_channel.empty:
            st.caption("No messages yet today.")
        else:
            st.altair_chart(charts.channel_mix(by_channel), width="stretch",
                            height=charts.bar_height(len(by_channel)))
    with reasons:
        st.subheader("Escalations today by reason")
        by_reason = data.escalations_by_reason_today()
        if by_reason.empty:
            st.caption("No escalations yet today.")
        else:
            st.altair_chart(charts.count_bars(by_reason, "reason", "#E15759"), width="stretch",
                            height=charts.bar_height(len(by_reason)))
    st.caption(f"Updated {datetime.now(UTC):%H:%M:%S} UTC · refreshes every 5 s · day starts 00:00 UTC")


live()
