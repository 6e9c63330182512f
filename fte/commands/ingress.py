"""`fte ingress`: serve the ingress (webhooks, web form, read endpoints) with uvicorn."""

from __future__ import annotations

import uvicorn

from fte.kafka import ensure_topics


def register(subparsers) -> None:
    p = subparsers.add_parser("ingress", help="run the ingress HTTP API (webhooks, web form)")
    p.add_argument("--host", help="default INGRESS_HOST")
    p.add_argument("--port", type=int, help="default INGRESS_PORT")
    p.set_defaults(func=run)


def run(args, settings) -> int:
    from ingress.app import create_app

    ensure_topics(settings.kafka_bootstrap, settings.TOPIC_PREFIX)
    # Behind a proxy, X-Forwarded-* are honoured for the Twilio signature URL (ingress/security.py);
    # the client address for rate limits comes from uvicorn's proxy_headers (trusted hosts only).
    uvicorn.run(create_app(settings), host=args.host or settings.INGRESS_HOST,
                port=args.port or settings.INGRESS_PORT, log_level=settings.LOG_LEVEL.lower(),
                # Our logging (fte/logs.py): redacted JSON, access lines without query strings.
                log_config=None, access_log=settings.INGRESS_ACCESS_LOG, proxy_headers=True)
    return 0
