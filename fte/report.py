"""The day's report: figures for one UTC day, rendered as Markdown or HTML (with charts).

`build_report` reads the figures (schema/queries/operations.py), `to_markdown` / `to_html`
render them; charts are inline SVG so they show in a mail client without scripts. The
console's Report page shows the same `Report`.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta

from flows.sla import SlaConfig
from schema.events import Channel


@dataclass(frozen=True)
class ChannelFigures:
    channel: str
    messages: int = 0
    customers: int = 0
    tickets: int = 0
    responded: int = 0
    p50_s: float | None = None
    p95_s: float | None = None
    sla_target_s: float | None = None
    breaches: int = 0
    met: int = 0


@dataclass(frozen=True)
class Report:
    day: date
    generated_at: datetime
    channels: list[ChannelFigures]
    escalations: int
    escalation_reasons: list[tuple[str, int]]
    tickets: int
    resolved: int
    reopened: int
    cross_channel_customers: int
    sentiment: list[tuple[datetime, float, int]]
    unanswered: list[tuple[str, int]]
    dead_letters: list[tuple[str, str, int, int]]
    uptime: dict[str, float] = field(default_factory=dict)  # service -> share of minutes live

    @property
    def messages(self) -> int:
        return sum(c.messages for c in self.channels)

    @property
    def escalation_rate(self) -> float | None:
        return self.escalations / self.messages if self.messages else None

    @property
    def resolution_rate(self) -> float | None:
        return self.resolved / self.tickets if self.tickets else None


def day_bounds(day: date) -> tuple[datetime, datetime]:
    start = datetime.combine(day, time(0), tzinfo=UTC)
    return start, start + timedelta(days=1)


SERVICES = ("support-flow", "metrics-flow", "dispatcher", "notify", "console")


def build_report(conn, day: date, sla: SlaConfig, now: datetime | None = None) -> Report:
    from schema.queries.operations import report_rows

    now = now or datetime.now(UTC)
    start, end = day_bounds(day)
    rows = report_rows(conn, start, end)
    figures: dict[str, dict] = {c.value: {"channel": c.value} for c in Channel}
    for channel, messages, customers in rows["volume"]:
        figures.setdefault(channel, {"channel": channel}).update(messages=messages, customers=customers)
    for channel, tickets, responded, p50, p95 in rows["first_response"]:
        figures.setdefault(channel, {"channel": channel}).update(
            tickets=tickets, responded=responded, p50_s=p50, p95_s=p95)
    for channel, breaches, met in rows["sla"]:
        figures.setdefault(channel, {"channel": channel}).update(breaches=breaches, met=met)
    for channel, f in figures.items():
        if channel in {c.value for c in Channel}:
            f["sla_target_s"] = sla.target(Channel(channel), "normal").total_seconds()
    tickets, resolved, reopened, _escalated = rows["resolution"]
    minutes = max(1.0, (min(now, end) - start).total_seconds() / 60.0)
    uptime = {s: 0.0 for s in SERVICES}
    uptime.update({service: min(1.0, live / minutes) for service, live in rows["uptime"]})
    return Report(
        day=day, generated_at=now,
        channels=[ChannelFigures(**f) for _, f in sorted(figures.items())],
        escalations=sum(n for _, n in rows["escalation_reasons"]),
        escalation_reasons=[(r, n) for r, n in rows["escalation_reasons"]],
        tickets=tickets, resolved=resolved, reopened=reopened,
        cross_channel_customers=rows["cross_channel"],
        sentiment=[(h, float(m), n) for h, m, n in rows["sentiment"]],
        unanswered=[(q, n) for q, n in rows["unanswered"]],
        dead_letters=[tuple(r) for r in rows["dead_letters"]],
        uptime=uptime,
    )


# --- rendering ----------------------------------------------------------------------------

def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}%"


def _dur(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds % 3600 == 0 or seconds >= 7200:
        return f"{seconds / 3600:.1f}".removesuffix(".0") + "h"
    return f"{seconds / 60:.0f}m"


def _within(c: ChannelFigures) -> str:
    if c.p95_s is None or c.sla_target_s is None:
        return "–"
    return "yes" if c.p95_s <= c.sla_target_s else "NO"


def to_markdown(r: Report) -> str:
    out = [f"# Support report for {r.day.isoformat()}", "",
           f"{r.messages} messages, {r.tickets} tickets, escalation rate {_pct(r.escalation_rate)}, "
           f"resolution rate {_pct(r.resolution_rate)} ({r.resolved} resolved without a person, "
           f"{r.reopened} reopened), {r.cross_channel_customers} customers on more than one channel.", "",
           "## Volume and first response", "",
           "| channel | messages | customers | tickets | first response p50 | p95 | SLA target | p95 within | breaches |",
           "|---|---:|---:|---:|---:|---:|---:|---|---:|"]
    for c in r.channels:
        out.append(f"| {c.channel} | {c.messages} | {c.customers} | {c.tickets} | {_dur(c.p50_s)} | "
                   f"{_dur(c.p95_s)} | {_dur(c.sla_target_s)} | {_within(c)} | {c.breaches} |")
    out += ["", "## Escalations", "", f"{r.escalations} escalations ({_pct(r.escalation_rate)} of messages).", ""]
    out += [f"- {reason}: {n}" for reason, n in r.escalation_reasons] or ["- none"]
    out += ["", "## Sentiment by hour (UTC, -1 … 1)", ""]
    out += [f"- {h:%H:00}: {m:+.2f} ({n} messages)" for h, m, n in r.sentiment] or ["- no messages"]
    out += ["", "## Top unanswered questions", ""]
    out += [f"{i}. {q} ({n})" for i, (q, n) in enumerate(r.unanswered, 1)] or ["none"]
    out += ["", "## Dead letters", ""]
    out += [f"- {topic}: {reason} ({n}, {replayed} replayed)" for topic, reason, n, replayed in r.dead_letters] \
        or ["- none"]
    out += ["", "## Uptime", "", "| service | live |", "|---|---:|"]
    out += [f"| {s} | {_pct(u)} |" for s, u in sorted(r.uptime.items())]
    out += ["", f"_Generated {r.generated_at:%Y-%m-%d %H:%M} UTC._", ""]
    return "\n".join(out)


def svg_bars(items: list[tuple[str, float]], *, width: int = 420, unit: str = "",
             signed: bool = False) -> str:
    """A horizontal bar chart as inline SVG (mail clients show it; no script needed)."""
    if not items:
        return "<p><em>no data</em></p>"
    row, label_w = 22, 150
    scale = max(abs(v) for _, v in items) or 1.0
    bar_w = width - label_w - 60
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{row * len(items) + 4}" '
             f'role="img" font-family="sans-serif" font-size="12">']
    for i, (label, value) in enumerate(items):
        y = i * row + 2
        length = abs(value) / scale * (bar_w / 2 if signed else bar_w)
        x = label_w + (bar_w / 2 if signed else 0) - (length if signed and value < 0 else 0)
        colour = "#c0392b" if signed and value < 0 else "#2e86c1"
        parts.append(f'<text x="0" y="{y + 14}">{html.escape(label[:24])}</text>'
                     f'<rect x="{x:.1f}" y="{y}" width="{max(length, 1):.1f}" height="{row - 6}" fill="{colour}"/>'
                     f'<text x="{label_w + bar_w + 6}" y="{y + 14}">{value:g}{unit}</text>')
    parts.append("</svg>")
    return "".join(parts)


def to_html(r: Report) -> str:
    esc = html.escape
    rows = "".join(
        f"<tr><td>{esc(c.channel)}</td><td>{c.messages}</td><td>{c.customers}</td><td>{c.tickets}</td>"
        f"<td>{_dur(c.p50_s)}</td><td>{_dur(c.p95_s)}</td><td>{_dur(c.sla_target_s)}</td>"
        f"<td>{_within(c)}</td><td>{c.breaches}</td></tr>" for c in r.channels)
    unanswered = "".join(f"<li>{esc(q)} ({n})</li>" for q, n in r.unanswered) or "<li>none</li>"
    dead = "".join(f"<li>{esc(t)}: {esc(reason)} ({n}, {rp} replayed)</li>"
                   for t, reason, n, rp in r.dead_letters) or "<li>none</li>"
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>Support report {r.day.isoformat()}</title>
<style>body{{font-family:sans-serif;max-width:880px;margin:auto}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}}td:first-child{{text-align:left}}</style>
</head><body>
<h1>Support report for {r.day.isoformat()}</h1>
<p>{r.messages} messages, {r.tickets} tickets, escalation rate {_pct(r.escalation_rate)},
resolution rate {_pct(r.resolution_rate)} ({r.resolved} resolved without a person, {r.reopened} reopened),
{r.cross_channel_customers} customers on more than one channel.</p>
<h2>Volume per channel</h2>
{svg_bars([(c.channel, c.messages) for c in r.channels])}
<h2>First response against SLA</h2>
<table><tr><th>channel</th><th>messages</th><th>customers</th><th>tickets</th><th>p50</th><th>p95</th>
<th>SLA target</th><th>p95 within</th><th>breaches</th></tr>{rows}</table>
{svg_bars([(c.channel, round(c.p95_s or 0, 1)) for c in r.channels], unit="s")}
<h2>Escalations: {r.escalations} ({_pct(r.escalation_rate)})</h2>
{svg_bars([(reason, n) for reason, n in r.escalation_reasons])}
<h2>Sentiment by hour (UTC)</h2>
{svg_bars([(f"{h:%H:00}", round(m, 2)) for h, m, _ in r.sentiment], signed=True)}
<h2>Top unanswered questions</h2><ol>{unanswered}</ol>
<h2>Dead letters</h2><ul>{dead}</ul>
<h2>Uptime</h2>
{svg_bars([(s, round(100 * u, 1)) for s, u in sorted(r.uptime.items())], unit="%")}
<p><em>Generated {r.generated_at:%Y-%m-%d %H:%M} UTC.</em></p>
</body></html>
"""


def send_report(conn, r: Report, recipients: list[str]) -> int:
    """Email the report to each recipient through the outbox, once per day and recipient."""
    from sinks.notifications import enqueue_email

    queued = 0
    with conn.transaction():
        for recipient in recipients:
            before = conn.execute("SELECT 1 FROM reply_outbox WHERE inbound_key = %s",
                                  (f"report:{r.day.isoformat()}:{recipient}",)).fetchone()
            enqueue_email(conn, key=f"report:{r.day.isoformat()}:{recipient}", recipient=recipient,
                          subject=f"Support report for {r.day.isoformat()}", body=to_markdown(r),
                          html=to_html(r))
            queued += before is None
    return queued
