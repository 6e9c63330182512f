"""`fte tickets close-quiet`: close answered tickets the customer left quiet.

A ticket the agent answered (status `answered`, no escalation being worked on) whose last
message is older than TICKET_QUIET_HOURS closes as resolved (`closed_reason = 'quiet'`). The
reopen happens in Postgres: the trigger `messages_reopen_quiet_ticket` (migration 070) sets
the ticket back to `open` and counts it when the next customer message on it is stored, so
"resolved" means "answered and not reopened". Run once (the Kubernetes CronJob) or with
`--every` as a service (`fte up`).
"""

from __future__ import annotations

import signal
import threading
from datetime import UTC, datetime

from fte.logs import get_logger

log = get_logger(__name__)


def register(subparsers) -> None:
    p = subparsers.add_parser("tickets", help="ticket housekeeping (close quiet answered tickets)")
    sub = p.add_subparsers(dest="tickets_command", required=True)
    close = sub.add_parser("close-quiet", help="close answered tickets quiet for TICKET_QUIET_HOURS")
    close.add_argument("--hours", type=float, default=None, help="quiet period (default TICKET_QUIET_HOURS)")
    close.add_argument("--every", type=float, default=None, metavar="SECONDS",
                       help="keep running, once every SECONDS")
    close.set_defaults(func=run)


def close_once(settings, hours: float | None = None) -> list[str]:
    import psycopg

    from schema.queries.operations import close_quiet_tickets

    quiet_s = 3600.0 * (hours if hours is not None else settings.TICKET_QUIET_HOURS)
    with psycopg.connect(settings.database_url) as conn:
        closed = close_quiet_tickets(conn, datetime.now(UTC), quiet_s)
    log.info("tickets.closed_quiet", count=len(closed))
    return closed


def run(args, settings) -> int:
    if args.every is None:
        print(f"closed {len(close_once(settings, args.hours))} quiet ticket(s)")
        return 0
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    while not stop.is_set():
        try:
            close_once(settings, args.hours)
        except Exception as exc:  # noqa: BLE001 -- a database hiccup: try again next round
            log.warning("tickets.close_failed", error=str(exc)[:200])
        stop.wait(args.every)
    return 0
