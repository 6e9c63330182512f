"""The ingress app: `create_app()` for uvicorn (`fte ingress`, tests, benchmarks)."""

from __future__ import annotations

from contextlib import asynccontextmanager
from pathlib import Path

import psycopg
from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from prometheus_client import Counter
from psycopg_pool import PoolTimeout

from fte.logs import get_logger
from fte.settings import Settings
from ingress.background import background
from ingress.deps import RateLimits, Services, open_pool
from ingress.operator_auth import OperatorAuth, Viewer
from ingress.publisher import KafkaUnavailable, Publisher
from ingress.routes import conversations, customers, gmail, health, metrics, support, verify, whatsapp

log = get_logger(__name__)
STATIC = Path(__file__).parent / "static"

# The support page runs only its own script and cannot be framed; text from customers and
# agents is inserted as text (app.js), so injected markup would not run even without these.
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; object-src 'none'; "
                               "base-uri 'none'; frame-ancestors 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}

RESPONSES = Counter("ingress_responses_total", "HTTP responses by route and status",
                    ["route", "status"])


class CountResponses:
    """Responses by route template and status (pure ASGI: no per-request task group)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def counting_send(message):
            if message["type"] == "http.response.start":
                route = scope.get("route")
                RESPONSES.labels(getattr(route, "path", "unmatched"), str(message["status"])).inc()
            await send(message)

        await self.app(scope, receive, counting_send)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        pool = open_pool(settings)
        await pool.open(wait=False)
        publisher = Publisher(settings.kafka_bootstrap, timeout_s=settings.INGRESS_PUBLISH_TIMEOUT_S)
        app.state.services = Services(
            settings=settings, publisher=publisher, db=pool,
            limits=RateLimits(settings.RATE_LIMIT_PER_IP, settings.RATE_LIMIT_PER_IDENTITY))
        log.info("ingress.started", kafka=settings.kafka_bootstrap, topic_prefix=settings.TOPIC_PREFIX)
        try:
            async with background(app.state.services):  # WhatsApp relay, Gmail watch
                yield
        finally:
            publisher.close()
            await pool.close()

    app = FastAPI(title="fte ingress", version="1.0",
                  description="Gmail, WhatsApp and web-form intake into Kafka; read endpoints.",
                  # Bodies over the limit get 413, whether announced by Content-Length or streamed.
                  max_body_size=settings.MAX_BODY_BYTES, lifespan=lifespan,
                  # The API description is for operators: served below behind authentication.
                  docs_url=None, redoc_url=None, openapi_url=None)
    app.state.operator_auth = OperatorAuth(settings)
    settings.twilio_auth_token()  # fail at start, not at the first webhook, in production
    for module in (support, verify, whatsapp, gmail, customers, conversations, metrics, health):
        app.include_router(module.router)

    @app.exception_handler(PoolTimeout)
    @app.exception_handler(psycopg.OperationalError)
    async def database_unavailable(request: Request, exc: Exception) -> JSONResponse:
        log.warning("ingress.database_unavailable", path=request.url.path, error=type(exc).__name__)
        return JSONResponse({"detail": "database unavailable, nothing was recorded; retry later"},
                            status_code=503, headers={"Retry-After": "5"})

    @app.exception_handler(KafkaUnavailable)
    async def kafka_unavailable(request: Request, exc: KafkaUnavailable) -> JSONResponse:
        log.warning("ingress.kafka_unavailable", path=request.url.path, error=str(exc))
        return JSONResponse({"detail": "event bus unavailable, nothing was recorded; retry later"},
                            status_code=503, headers={"Retry-After": "5"})


    @app.get("/openapi.json", include_in_schema=False, dependencies=[Viewer])
    def read_openapi() -> JSONResponse:
        return JSONResponse(app.openapi())

    @app.get("/docs", include_in_schema=False, dependencies=[Viewer])
    def read_docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi.json", title="fte ingress (operators)")

    @app.get("/", include_in_schema=False)
    def support_page() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers=PAGE_HEADERS)

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.add_middleware(CountResponses)
    return app
