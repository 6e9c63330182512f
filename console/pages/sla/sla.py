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
cols = st.columns(len(target_s))
for col, (channel, seconds) in zip(cols, target_s.items()):
    col.metric(f"{channel} first-response target", f"{seconds / 60:.0f} min" if seconds < 3600 else f"{seconds / 3600:.0f} h",
               border=True)

st.subheader("p95 first response per channel")
p95 = data.p95_since(hours)
if p95.empty:
    st.info("No first responses in this range yet (metric windows come from the metrics flow).")
else:
    st.altair_chart(charts.p95_with_targets(p95, targets.targets_frame(), targets.p95_first_response_max_s()),
                    width="stretch")
    st.caption(f"Red line: the channel's first-response SLA (normal priority). Dashed orange: the "
               f"{targets.p95_first_response_max_s():.0f} s latency alert threshold. Log scale.")

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
        breaches = breaches.assign(
            late_min=(breaches["occurred_at"] - breaches["deadline"]).dt.total_seconds() / 60)
        st.dataframe(
            breaches[["occurred_at", "ticket_id", "channel", "priority", "customer", "subject",
                      "ticket_status", "deadline", "first_response_at"]],
            hide_index=True, width="stretch",
            column_config={
                "occurred_at": st.column_config.DatetimeColumn("breached", format="MMM D HH:mm"),
                "deadline": st.column_config.DatetimeColumn(format="MMM D HH:mm"),
                "first_response_at": st.column_config.DatetimeColumn("answered", format="MMM D HH:mm"),
            },
        )
