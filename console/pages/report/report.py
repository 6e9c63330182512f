"""Report: the day's figures (the same `Report` as `fte report daily`), with charts."""

from datetime import UTC, datetime, timedelta

import altair as alt
import pandas as pd
import streamlit as st

from console import data
from console.session import require_login
from flows.sla import load_sla_config
from fte.report import build_report, to_html, to_markdown

require_login()
st.title("Daily report")

today = datetime.now(UTC).date()
day = st.date_input("Day (UTC)", value=today - timedelta(days=1), max_value=today, key="report_day")
with data.connection() as conn:
    report = build_report(conn, day, load_sla_config(data.settings().SLA_CONFIG_FILE))

cols = st.columns(4)
cols[0].metric("Messages", report.messages, border=True)
cols[1].metric("Escalation rate", "–" if report.escalation_rate is None else f"{100 * report.escalation_rate:.1f}%",
               border=True)
cols[2].metric("Resolution rate", "–" if report.resolution_rate is None else f"{100 * report.resolution_rate:.1f}%",
               help="tickets answered without a person and not reopened / tickets opened", border=True)
cols[3].metric("Cross-channel customers", report.cross_channel_customers, border=True)

channels = pd.DataFrame([c.__dict__ for c in report.channels])
left, right = st.columns(2)
with left:
    st.subheader("Volume per channel")
    st.altair_chart(alt.Chart(channels).mark_bar().encode(x="messages:Q", y=alt.Y("channel:N", sort=None)),
                    width="stretch")
with right:
    st.subheader("First response p95 vs SLA (s)")
    st.altair_chart(alt.Chart(channels.fillna(0)).mark_bar().encode(x="p95_s:Q", y="channel:N")
                    + alt.Chart(channels).mark_tick(color="red", thickness=3).encode(x="sla_target_s:Q", y="channel:N"),
                    width="stretch")
st.dataframe(channels, hide_index=True, width="stretch")

left, right = st.columns(2)
with left:
    st.subheader("Escalation reasons")
    reasons = pd.DataFrame(report.escalation_reasons, columns=["reason", "count"])
    if reasons.empty:
        st.caption("No escalations.")
    else:
        st.altair_chart(alt.Chart(reasons).mark_bar().encode(x="count:Q", y=alt.Y("reason:N", sort="-x")),
                        width="stretch")
with right:
    st.subheader("Sentiment by hour")
    sentiment = pd.DataFrame(report.sentiment, columns=["hour", "mean", "messages"])
    if sentiment.empty:
        st.caption("No messages.")
    else:
        st.altair_chart(alt.Chart(sentiment).mark_line(point=True).encode(x="hour:T", y="mean:Q"),
                        width="stretch")

st.subheader("Top unanswered questions")
st.dataframe(pd.DataFrame(report.unanswered, columns=["question", "count"]), hide_index=True, width="stretch")
st.subheader("Dead letters")
st.dataframe(pd.DataFrame(report.dead_letters, columns=["topic", "reason", "count", "replayed"]),
             hide_index=True, width="stretch")
st.subheader("Uptime")
st.dataframe(pd.DataFrame([(s, round(100 * u, 1)) for s, u in sorted(report.uptime.items())],
                          columns=["service", "live %"]), hide_index=True, width="stretch")
st.download_button("Download HTML", to_html(report), file_name=f"report-{day}.html", mime="text/html")
st.download_button("Download Markdown", to_markdown(report), file_name=f"report-{day}.md")
