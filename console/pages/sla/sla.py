"""SLA: p95 first response per channel over time against its target, and the breaches."""

import streamlit as st

from console import charts, data, targets
from console.session import require_login

require_login()
st.title("SLA")

RANGES = {"1 hour": 1, "6 hours": 6, "24 hours": 24, "7 days": 24 * 7}
label = st.segmented_control("Range", list(RANGES), default="6 hours", key="sla_range")
hours = RANGES[label or "6 hours"]

target_s = targets.first_response_targets_s()
p95 = data.p95_since(hours)
for col, (channel, seconds) in zip(st.columns(len(target_s)), target_s.items()):
    mine = p95[p95["channel"] == channel]
    latest = mine["first_response_p95_ms"].iloc[-1] / 1000.0 if not mine.empty else None
    col.metric(f"{channel} · latest p95 first response",
               "–" if latest is None else charts.duration(latest),
               delta=f"SLA {charts.duration(seconds)}", delta_arrow="off",
               delta_color="off" if latest is None else ("normal" if latest <= seconds else "inverse"),
               border=True)

st.subheader("p95 first response per channel")
if p95.empty:
    st.info("No first responses in this range yet (metric windows come from the metrics flow).")
else:
    for col, (channel, seconds) in zip(st.columns(len(target_s)), target_s.items()):
        with col:
            if (p95["channel"] == channel).any():
                st.altair_chart(charts.p95_with_target(p95, channel, seconds, targets.p95_first_response_max_s()),
                                width="stretch")
            else:
                st.caption(f"{channel}: no first responses in this range.")
    st.caption("p95 of the first-response latency per 1-minute window (UTC), log scale. Red: the "
               "channel's first-response SLA (normal priority); dashed orange: the latency alert.")

left, right = st.columns([2, 3])
with left:
    st.subheader("Met vs breached")
    counts = data.sla_counts_since(hours)
    if counts.empty:
        st.info("No SLA outcomes in this range.")
    else:
        st.altair_chart(charts.sla_outcomes(counts), width="stretch")
with right:
    st.subheader("Breaches")
    breaches = data.sla_breaches_since(hours)
    if breaches.empty:
        st.success("No first-response breaches in this range.")
    else:
        st.dataframe(
            breaches[["occurred_at", "channel", "priority", "customer", "subject", "ticket_id",
                      "first_response_at"]],
            hide_index=True, width="stretch",
            column_config={
                "occurred_at": st.column_config.DatetimeColumn("breached", format="MMM D HH:mm"),
                "first_response_at": st.column_config.DatetimeColumn("answered", format="MMM D HH:mm"),
            },
        )
