"""Altair charts, one function each: data frame in, chart out (no Streamlit, no SQL)."""

from __future__ import annotations

from datetime import datetime

import altair as alt
import pandas as pd

CHANNEL_COLORS = alt.Scale(domain=["email", "whatsapp", "web"], range=["#4C78A8", "#25A366", "#F58518"])
# Times are stored and shown in UTC, whatever the viewer's browser zone.
TIME_X = alt.X("window_start:T", title=None, scale=alt.Scale(type="utc"), axis=alt.Axis(format="%H:%M"))
# A legend above the plot collapses band (nominal) axes inside Streamlit: only temporal charts use it.
CHANNEL_COLOR = alt.Color("channel:N", scale=CHANNEL_COLORS, legend=alt.Legend(orient="top", title=None))


def volume_per_minute(df: pd.DataFrame, start: datetime, end: datetime) -> alt.Chart:
    """Stacked bars: messages received a minute, per channel, over the whole range."""
    return (
        alt.Chart(df, height=220)
        .mark_bar()
        .encode(
            x=alt.X("utcyearmonthdatehoursminutes(window_start):T", title=None,
                    axis=alt.Axis(format="%H:%M"),
                    scale=alt.Scale(domain=[start.isoformat(), end.isoformat()])),
            y=alt.Y("sum(received):Q", title="messages / min"),
            color=CHANNEL_COLOR,
            tooltip=["channel", alt.Tooltip("window_start:T", format="%H:%M"), "received", "replied", "escalated"],
        )
    )


def bar_height(rows: int) -> int:
    """Pixels for a horizontal bar chart of `rows` bars. Pass it to st.altair_chart: Streamlit
    does not take a layered chart's height from the spec."""
    return max(100, 34 * rows + 40)


def count_bars(df: pd.DataFrame, category: str, color: str = "#4C78A8") -> alt.Chart:
    """Horizontal bars of `n` per category, largest first, labelled with the count."""
    base = alt.Chart(df).encode(
        y=alt.Y(f"{category}:N", sort="-x", title=None),
        x=alt.X("n:Q", title=None, axis=alt.Axis(tickMinStep=1)),
        tooltip=[category, "n"],
    )
    return base.mark_bar(color=color) + base.mark_text(align="left", dx=4).encode(text="n:Q")


def channel_mix(df: pd.DataFrame) -> alt.Chart:
    base = alt.Chart(df).encode(
        y=alt.Y("channel:N", title=None, sort=["email", "whatsapp", "web"]),
        x=alt.X("n:Q", title=None, axis=alt.Axis(tickMinStep=1)),
        tooltip=["channel", "n", alt.Tooltip("sentiment:Q", format="+.2f", title="mean sentiment")],
    )
    return (base.mark_bar().encode(color=alt.Color("channel:N", scale=CHANNEL_COLORS, legend=None))
            + base.mark_text(align="left", dx=4).encode(text="n:Q"))


def p95_with_target(df: pd.DataFrame, channel: str, target_s: float, alert_s: float) -> alt.LayerChart:
    """One channel's p95 first response over time (log seconds) under its SLA target (red)
    and the latency alert threshold (dashed orange), each labelled."""
    data = df[df["channel"] == channel].assign(p95_s=lambda d: d["first_response_p95_ms"] / 1000.0)
    low = min([0.1, *data["p95_s"].tolist()])
    y = alt.Y("p95_s:Q", title="p95 first response (s)",
              scale=alt.Scale(type="log", domain=[low, target_s * 3]))
    line = alt.Chart(data).mark_line(point=True, color=CHANNEL_COLORS.range[CHANNEL_COLORS.domain.index(channel)]).encode(
        x=TIME_X, y=y,
        tooltip=[alt.Tooltip("window_start:T", format="%H:%M", title="minute (UTC)"),
                 alt.Tooltip("p95_s:Q", format=".2f", title="p95 s"), "replied"],
    )
    rules = pd.DataFrame([{"y": target_s, "label": f"SLA {duration(target_s)}", "kind": "sla"},
                          {"y": alert_s, "label": f"alert {duration(alert_s)}", "kind": "alert"}])
    rule = alt.Chart(rules).mark_rule(strokeWidth=2).encode(
        y="y:Q",
        color=alt.Color("kind:N", scale=alt.Scale(domain=["sla", "alert"], range=["#D62728", "#FF7F0E"]), legend=None),
        strokeDash=alt.StrokeDash("kind:N", scale=alt.Scale(domain=["sla", "alert"], range=[[1, 0], [6, 4]]), legend=None),
    )
    label = alt.Chart(rules).mark_text(align="left", dx=4, dy=-7, fontSize=11).encode(
        y="y:Q", x=alt.value(0), text="label:N",
        color=alt.Color("kind:N", scale=alt.Scale(domain=["sla", "alert"], range=["#D62728", "#FF7F0E"]), legend=None),
    )
    return alt.layer(line, rule, label).properties(height=260, title=channel)


def duration(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s" if seconds < 10 else f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h".replace(".0 h", " h")


def sla_outcomes(df: pd.DataFrame) -> alt.Chart:
    """Tickets that met vs breached their first-response target, per channel."""
    return (
        alt.Chart(df, height=220)
        .mark_bar()
        .encode(
            x=alt.X("channel:N", title=None, axis=alt.Axis(labelAngle=0, labelFontSize=13)),
            xOffset=alt.XOffset("kind:N", sort=["met", "breach"]),
            y=alt.Y("n:Q", title="tickets", axis=alt.Axis(tickMinStep=1)),
            color=alt.Color("kind:N", scale=alt.Scale(domain=["met", "breach"], range=["#59A14F", "#D62728"]),
                            legend=alt.Legend(title=None)),
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
            x=alt.X("occurred_at:T", title=None, scale=alt.Scale(type="utc"), axis=alt.Axis(format="%d %b %H:%M")),
            y=alt.Y("channel:N", title=None, sort=["email", "whatsapp", "web"]),
            color=alt.Color("channel:N", scale=CHANNEL_COLORS, legend=None),
            shape=alt.Shape("direction:N", scale=alt.Scale(domain=["inbound", "outbound"], range=["circle", "triangle-right"]),
                            legend=alt.Legend(title=None)),
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
                legend=alt.Legend(title=None)),
            tooltip=["channel", "status", "n"],
        )
    )
