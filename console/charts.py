"""Altair charts, one function each: data frame in, chart out (no Streamlit, no SQL)."""

from __future__ import annotations

import altair as alt
import pandas as pd

CHANNEL_COLORS = alt.Scale(domain=["email", "whatsapp", "web"], range=["#4C78A8", "#25A366", "#F58518"])
CHANNEL_COLOR = alt.Color("channel:N", scale=CHANNEL_COLORS, legend=alt.Legend(orient="top", title=None))


def volume_per_minute(df: pd.DataFrame) -> alt.Chart:
    """Stacked bars: messages received a minute, per channel."""
    return (
        alt.Chart(df, height=220)
        .mark_bar()
        .encode(
            x=alt.X("window_start:T", title=None),
            y=alt.Y("sum(received):Q", title="messages / min"),
            color=CHANNEL_COLOR,
            tooltip=["channel", alt.Tooltip("window_start:T", format="%H:%M"), "received", "replied", "escalated"],
        )
    )


def p95_with_targets(df: pd.DataFrame, targets: pd.DataFrame, alert_s: float) -> alt.Chart:
    """p95 first response per channel over time (log seconds), the channel's SLA target as a
    red rule and the latency alert threshold as a dashed rule, one row per channel."""
    data = df.assign(p95_s=df["first_response_p95_ms"] / 1000.0).merge(targets, on="channel", how="left")
    base = alt.Chart(data)
    y = alt.Y("p95_s:Q", title="p95 first response (s)", scale=alt.Scale(type="log"))
    line = base.mark_line(point=True).encode(
        x=alt.X("window_start:T", title=None), y=y, color=CHANNEL_COLOR,
        tooltip=["channel", alt.Tooltip("window_start:T", format="%H:%M"),
                 alt.Tooltip("p95_s:Q", format=".2f", title="p95 s"), "replied"],
    )
    target = base.mark_rule(color="#D62728", strokeWidth=2).encode(
        y=alt.Y("mean(target_s):Q"), tooltip=[alt.Tooltip("mean(target_s):Q", title="SLA target s")])
    alert = base.mark_rule(color="#FF7F0E", strokeDash=[6, 4]).encode(y=alt.datum(alert_s))
    return (
        alt.layer(line, target, alert)
        .properties(height=160, width="container")
        .facet(row=alt.Row("channel:N", title=None, header=alt.Header(labelFontSize=14, labelFontWeight="bold")))
        .resolve_scale(y="independent")
    )


def sla_outcomes(df: pd.DataFrame) -> alt.Chart:
    """Met vs breached first responses per channel."""
    return (
        alt.Chart(df, height=160)
        .mark_bar()
        .encode(
            y=alt.Y("channel:N", title=None),
            x=alt.X("n:Q", title="tickets", stack="zero"),
            color=alt.Color("kind:N", scale=alt.Scale(domain=["met", "breach"], range=["#59A14F", "#D62728"]),
                            legend=alt.Legend(orient="top", title=None)),
            tooltip=["channel", "kind", "n"],
        )
    )


def timeline(df: pd.DataFrame) -> alt.Chart:
    """Every message of one customer on one time axis: a lane per channel, in vs out."""
    data = df.assign(preview=df["body"].str.slice(0, 80))
    return (
        alt.Chart(data, height=150)
        .mark_point(filled=True, size=120)
        .encode(
            x=alt.X("occurred_at:T", title=None),
            y=alt.Y("channel:N", title=None, sort=["email", "whatsapp", "web"]),
            color=CHANNEL_COLOR,
            shape=alt.Shape("direction:N", scale=alt.Scale(domain=["inbound", "outbound"], range=["circle", "triangle-right"]),
                            legend=alt.Legend(orient="top", title=None)),
            tooltip=[alt.Tooltip("occurred_at:T", format="%Y-%m-%d %H:%M"), "channel", "author", "preview"],
        )
    )


def top_articles(df: pd.DataFrame) -> alt.Chart:
    return (
        alt.Chart(df, height=max(120, 24 * len(df)))
        .mark_bar(color="#4C78A8")
        .encode(
            y=alt.Y("slug:N", sort="-x", title=None),
            x=alt.X("answers:Q", title="answers drawn from the article"),
            tooltip=["slug", "answers", alt.Tooltip("mean_score:Q", format=".2f")],
        )
    )


def lag_per_partition(df: pd.DataFrame) -> alt.Chart:
    data = df.assign(where=df["topic"] + " #" + df["partition"].astype(str))
    return (
        alt.Chart(data, height=max(120, 22 * len(data)))
        .mark_bar()
        .encode(
            y=alt.Y("where:N", title=None, sort=None),
            x=alt.X("lag:Q", title="messages behind"),
            color=alt.condition(alt.datum.lag > 100, alt.value("#D62728"), alt.value("#59A14F")),
            tooltip=["flow", "topic", "partition", "next_offset", "high_watermark", "lag"],
        )
    )


def outbox_status(df: pd.DataFrame) -> alt.Chart:
    long = df.melt(id_vars=["channel"], value_vars=["pending", "sending", "parked", "failed", "sent"],
                   var_name="status", value_name="n")
    return (
        alt.Chart(long, height=140)
        .mark_bar()
        .encode(
            y=alt.Y("channel:N", title=None),
            x=alt.X("n:Q", title="replies", stack="normalize", axis=alt.Axis(format="%")),
            color=alt.Color("status:N", scale=alt.Scale(
                domain=["sent", "pending", "sending", "parked", "failed"],
                range=["#59A14F", "#9ECAE9", "#4C78A8", "#F28E2B", "#D62728"]),
                legend=alt.Legend(orient="top", title=None)),
            tooltip=["channel", "status", "n"],
        )
    )
