"""GET /health (public: up or not, nothing else) and GET /health/details (operators: Kafka,
Postgres and each channel)."""

from __future__ import annotations

import asyncio
import time

import psycopg
from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from psycopg_pool import PoolTimeout

from ingress.deps import ServicesDep
from ingress.intake_health import read_intake
from ingress.models import HealthPublic, HealthStatus
from ingress.operator_auth import Viewer

router = APIRouter(tags=["health"])

# The public probe reuses a check this recent, so anonymous calls never fan out to Kafka.
CHECK_TTL_S = 2.0


async def _postgres(services) -> tuple[bool, dict]:
    try:
        async with asyncio.timeout(3):
            async with services.db.connection() as conn:
                await conn.execute("SELECT 1")
                cursors = await (await conn.execute(
                    "SELECT account, cursor, updated_at FROM channel_cursors WHERE channel = 'email'"
                )).fetchall()
        return True, {"cursors": cursors}
    except (psycopg.Error, PoolTimeout, OSError, TimeoutError) as exc:
        return False, {"error": type(exc).__name__}


async def _check(services) -> tuple[bool, bool, dict]:
    kafka_ok = await run_in_threadpool(services.publisher.healthy, 2.0)
    pg_ok, pg = await _postgres(services)
    services.last_health = (time.monotonic(), kafka_ok and pg_ok)
    return kafka_ok, pg_ok, pg


@router.get("/health", response_model=HealthStatus,
            summary="Whether this ingress can accept messages (readiness); nothing else")
async def read_health(services: ServicesDep) -> JSONResponse:
    checked_at, ok = services.last_health
    if time.monotonic() - checked_at > CHECK_TTL_S:
        async with services.health_lock:
            checked_at, ok = services.last_health
            if time.monotonic() - checked_at > CHECK_TTL_S:
                kafka_ok, pg_ok, _ = await _check(services)
                ok = kafka_ok and pg_ok
    return JSONResponse({"status": "ok" if ok else "degraded"}, status_code=200 if ok else 503)


@router.get("/health/details", response_model=HealthPublic, dependencies=[Viewer],
            summary="Kafka, Postgres and each channel (operators)")
async def read_health_details(services: ServicesDep) -> JSONResponse:
    settings = services.settings
    kafka_ok, pg_ok, pg = await _check(services)
    email_cursor = next((c for c in pg.get("cursors", []) if c["account"] == settings.GMAIL_MAILBOX), None)
    push_auth = ("oidc" if settings.GMAIL_PUSH_AUDIENCE and settings.GMAIL_PUSH_SERVICE_ACCOUNT
                 else "shared-token" if settings.GMAIL_PUSH_VERIFICATION_TOKEN else "unconfigured")
    channels = {
        "whatsapp": {"state": "ok" if kafka_ok else "down", "signature": "twilio"},
        "email": {
            "state": ("ok" if kafka_ok and pg_ok and push_auth != "unconfigured" else
                      "unconfigured" if push_auth == "unconfigured" else "down"),
            "push_auth": push_auth,
            "api": "local" if settings.GMAIL_DISCOVERY_URL else "google",
            "history_id": email_cursor["cursor"] if email_cursor else None,
            "synced_at": email_cursor["updated_at"].isoformat() if email_cursor else None,
        },
        "web": {"state": "ok" if kafka_ok and pg_ok else "down"},
    }
    if pg_ok:  # per channel: last message, last push/webhook, Gmail cursor and watch
        for name, intake in (await read_intake(services)).items():
            channels[name].update(intake)
    body = HealthPublic(
        status="ok" if kafka_ok and pg_ok else "degraded",
        kafka={"ok": kafka_ok, "bootstrap": settings.kafka_bootstrap,
               "producer_connected": not services.publisher.brokers_down},
        postgres={"ok": pg_ok, **({"error": pg["error"]} if "error" in pg else {})},
        channels=channels,
    )
    return JSONResponse(body.model_dump(mode="json"), status_code=200 if body.status == "ok" else 503)
