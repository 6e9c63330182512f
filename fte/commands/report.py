"""`fte report daily`: the day's support figures as Markdown or HTML, optionally emailed.

    fte report daily                      # yesterday (UTC), Markdown on stdout
    fte report daily --date 2026-11-27 --format html --out report.html
    fte report daily --send               # to REPORT_RECIPIENTS through the outbox (once a day)
    fte report daily --send --at 06:00    # keep running: send yesterday's each day at 06:00 UTC
"""

from __future__ import annotations

import signal
import sys
import threading
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

from fte.logs import get_logger

log = get_logger(__name__)


def register(subparsers) -> None:
    p = subparsers.add_parser("report", help="support reports")
    sub = p.add_subparsers(dest="report_command", required=True)
    daily = sub.add_parser("daily", help="the day's figures (default: yesterday, UTC)")
    daily.add_argument("--date", type=date.fromisoformat, default=None, help="YYYY-MM-DD (UTC day)")
    daily.add_argument("--format", choices=["md", "html"], default="md")
    daily.add_argument("--out", type=Path, default=None, help="write here instead of stdout")
    daily.add_argument("--send", action="store_true", help="email it to REPORT_RECIPIENTS")
    daily.add_argument("--at", type=time.fromisoformat, default=None, metavar="HH:MM",
                       help="keep running and send yesterday's report every day at this UTC time")
    daily.set_defaults(func=run)


def recipients(settings) -> list[str]:
    return [a.strip() for a in settings.REPORT_RECIPIENTS.split(",") if a.strip()]


def produce(settings, day: date, fmt: str, send: bool) -> tuple[str, int]:
    import psycopg

    from flows.sla import load_sla_config
    from fte.report import build_report, send_report, to_html, to_markdown

    with psycopg.connect(settings.database_url) as conn:
        report = build_report(conn, day, load_sla_config(settings.SLA_CONFIG_FILE))
        queued = send_report(conn, report, recipients(settings)) if send else 0
    return (to_html(report) if fmt == "html" else to_markdown(report)), queued


def next_run(now: datetime, at: time) -> datetime:
    candidate = datetime.combine(now.date(), at, tzinfo=UTC)
    return candidate if candidate > now else candidate + timedelta(days=1)


def run(args, settings) -> int:
    if args.at is None:
        day = args.date or (datetime.now(UTC).date() - timedelta(days=1))
        text, queued = produce(settings, day, args.format, args.send)
        if args.out:
            args.out.write_text(text)
        elif not args.send:
            sys.stdout.write(text)
        if args.send:
            print(f"report for {day}: queued for {queued} new recipient(s) of {len(recipients(settings))}")
        return 0
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    while not stop.is_set():
        now = datetime.now(UTC)
        # On start, yesterday's report goes out if it has not (sending is once per day).
        try:
            produce(settings, now.date() - timedelta(days=1), "md", True)
        except Exception as exc:  # noqa: BLE001 -- the next round tries again
            log.warning("report.failed", error=str(exc)[:200])
        stop.wait((next_run(datetime.now(UTC), args.at) - datetime.now(UTC)).total_seconds())
    return 0
