"""Intake health per channel, read by the ingress: merged into /health's channel detail,
and an `intake_<channel>` alert (one per hour) while a channel is not ok. The verdicts
themselves are `fte.intake.assess` (pure; the console's System page uses it too)."""

from __future__ import annotations

from psycopg.types.json import Jsonb

from fte.intake import Snapshot, assess
from schema.queries import channels as q


async def read_intake(services) -> dict[str, dict]:
    settings = services.settings
    async with services.db.connection() as conn:
        now = (await (await conn.execute("SELECT now() AS now")).fetchone())["now"]
        last = {r["channel"]: r["last_message_at"]
                for r in await (await conn.execute(q.INTAKE_LAST_MESSAGES)).fetchall()}
        last["web"] = (await (await conn.execute(q.INTAKE_LAST_WEB)).fetchone())["at"]
        cursor = await (await conn.execute(q.CURSOR, {"account": settings.GMAIL_MAILBOX})).fetchone()
        watch = await (await conn.execute(q.WATCH_STATE, {"account": settings.GMAIL_MAILBOX})).fetchone()
        inbox = await (await conn.execute(q.INTAKE_WHATSAPP_INBOX)).fetchone()
    snap = Snapshot(now=now, last_message=last, email_cursor=int(cursor["cursor"]) if cursor else None,
                    email_cursor_at=cursor["updated_at"] if cursor else None, watch=watch,
                    whatsapp_inbox=dict(inbox or {}))
    return assess(snap, watch_expected=bool(settings.GMAIL_PUBSUB_TOPIC),
                  fallback_poll_s=settings.GMAIL_FALLBACK_POLL_S)


async def raise_alerts(services) -> list[str]:
    """An `intake_<channel>` alert (one per hour bucket) for each channel that is not ok."""
    raised = []
    verdicts = await read_intake(services)
    async with services.db.connection() as conn:
        for channel, detail in verdicts.items():
            if detail["intake"] != "ok":
                await conn.execute(q.RAISE_ALERT, {"kind": f"intake_{channel}", "value": 1, "threshold": 0,
                                                   "detail": Jsonb({"channel": channel, **detail})})
                raised.append(channel)
    return raised
