"""The console's Report page shows the day's report (the same figures as `fte report daily`)."""

from __future__ import annotations

from datetime import UTC, datetime

import psycopg
from console_apptest import open_page, texts


def test_report_page_shows_today_figures_with_charts(console_env):
    at = open_page("overview")
    at.switch_page("pages/report/report.py")
    at.run()
    assert not at.exception, at.exception
    today = datetime.now(UTC).date()
    at.date_input(key="report_day").set_value(today).run()
    assert not at.exception, at.exception
    with psycopg.connect(console_env["database_url"]) as conn:
        inbound = conn.execute("SELECT count(*) FROM messages WHERE direction = 'inbound' "
                               "AND occurred_at >= date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'"
                               ).fetchone()[0]
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Messages"] == str(inbound) and inbound > 0
    assert metrics["Cross-channel customers"] == "1"  # Ada: email and WhatsApp
    page = texts(at)
    assert "Daily report" in page and "Escalation reasons" in page and "Uptime" in page
    charts = at.get("arrow_vega_lite_chart") or at.get("vega_lite_chart")
    assert len(charts) == 4  # volume, p95 vs SLA, escalation reasons, sentiment
