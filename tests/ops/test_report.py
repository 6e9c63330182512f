"""`fte report daily`: the figures of a seeded day, Markdown and HTML, sent once."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import date
from pathlib import Path

import psycopg

from flows.sla import SlaConfig
from fte.report import build_report, to_html

SEED = Path(__file__).with_name("seed_day.sql")
DAY = date(2026, 11, 20)


def fte(*argv: str, env: dict[str, str]) -> str:
    result = subprocess.run([sys.executable, "-m", "fte.cli", *argv], env={**os.environ, **env},
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def seeded(db: str) -> str:
    with psycopg.connect(db) as conn:
        conn.execute(SEED.read_text())
    return db


def test_report_figures_of_a_seeded_day(migrated_db):
    with psycopg.connect(seeded(migrated_db)) as conn:
        r = build_report(conn, DAY, SlaConfig())
    by = {c.channel: c for c in r.channels}
    assert (by["email"].messages, by["whatsapp"].messages, by["web"].messages) == (1, 2, 2)
    assert r.messages == 5 and by["whatsapp"].customers == 2
    assert by["web"].tickets == 2 and by["web"].p50_s == 30.0 and by["web"].p95_s == 39.0
    assert by["email"].p50_s == 60.0 and by["email"].sla_target_s == 4 * 3600
    assert by["whatsapp"].breaches == 1 and by["whatsapp"].met == 1
    assert r.escalations == 1 and r.escalation_reasons == [("refund", 1)] and r.escalation_rate == 0.2
    # Resolved = closed quiet, never reopened, never escalated: T-2 and T-3 of T-1..T-4.
    assert (r.tickets, r.resolved, r.reopened) == (4, 2, 1) and r.resolution_rate == 0.5
    assert r.cross_channel_customers == 1  # Ada wrote by email and WhatsApp
    assert [round(m, 2) for _, m, _ in r.sentiment] == [-0.5, 0.5, -0.3, 0.1, 0.0]
    assert r.unanswered[0] == ("how do i export my data", 2)
    assert r.dead_letters == [("channel.web.inbound", "invalid JSON", 2, 0)]
    assert r.uptime["support-flow"] == 0.5 and r.uptime["dispatcher"] == 1.0 and r.uptime["notify"] == 0.0


def test_report_command_renders_and_sends_once(migrated_db):
    env = {"DATABASE_URL": seeded(migrated_db), "REPORT_RECIPIENTS": "lead@example.com, ops@example.com"}
    md = fte("report", "daily", "--date", DAY.isoformat(), env=env)
    assert md.startswith("# Support report for 2026-11-20")
    assert "| web | 2 | 1 | 2 | 30s | 39s | 1h | yes | 0 |" in md
    assert "resolution rate 50.0%" in md and "- refund: 1" in md
    html = fte("report", "daily", "--date", DAY.isoformat(), "--format", "html", env=env)
    assert html.count("<svg") == 5 and "<h2>Uptime</h2>" in html
    first = fte("report", "daily", "--date", DAY.isoformat(), "--send", env=env)
    assert "queued for 2 new recipient(s) of 2" in first
    again = fte("report", "daily", "--date", DAY.isoformat(), "--send", env=env)
    assert "queued for 0 new recipient(s) of 2" in again
    with psycopg.connect(migrated_db) as conn:
        rows = conn.execute("SELECT recipient, subject, payload->>'html' FROM reply_outbox "
                            "WHERE kind = 'notification' ORDER BY recipient").fetchall()
    assert [r[0] for r in rows] == ["lead@example.com", "ops@example.com"]
    assert rows[0][1] == "Support report for 2026-11-20" and "<svg" in rows[0][2]


def test_html_escapes_customer_text(migrated_db):
    with psycopg.connect(seeded(migrated_db)) as conn:
        conn.execute("INSERT INTO kb_lookups (inbound_key, channel, query, answered, created_at) "
                     "VALUES ('k9', 'web', '<script>alert(1)</script>', false, '2026-11-20 18:00Z')")
        html = to_html(build_report(conn, DAY, SlaConfig()))
    assert "<script>" not in html and "&lt;script&gt;" in html
