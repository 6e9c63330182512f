"""`fte sandbox`: local servers speaking the Gmail, Twilio and OpenAI HTTP APIs.

`fte up` runs it in development when no real channel credentials are configured, and
points the SDKs of every service at it (`sandbox_environment`).
"""

from __future__ import annotations

import secrets

import uvicorn

from fte.settings import Settings

DEV_TWILIO_TOKEN = "dev-twilio-auth-token"


def register(subparsers) -> None:
    p = subparsers.add_parser("sandbox", help="run the local Gmail/Twilio/OpenAI API server")
    p.add_argument("--port", type=int, help="default SANDBOX_PORT")
    p.set_defaults(func=run)


def run(args, settings) -> int:
    from sandbox.app import create_app

    # Google's and Twilio's front ends keep idle connections open for minutes; with uvicorn's
    # 5 s default the SDKs' pooled connections would break on the first send after a pause.
    uvicorn.run(create_app(settings), host="127.0.0.1", port=args.port or settings.SANDBOX_PORT,
                log_level="warning", access_log=False, timeout_keep_alive=120)
    return 0


def sandbox_needed(settings: Settings) -> bool:
    """Development without real Gmail or Twilio credentials."""
    return (settings.ENVIRONMENT == "development" and settings.GMAIL_CREDENTIALS_FILE is None
            and settings.TWILIO_AUTH_TOKEN.get_secret_value() == DEV_TWILIO_TOKEN)


def sandbox_environment(settings: Settings) -> dict[str, str]:
    """Variables pointing the services' SDKs at the sandbox (unset ones only)."""
    base = f"http://127.0.0.1:{settings.SANDBOX_PORT}"
    env = {}
    if not settings.GMAIL_DISCOVERY_URL:
        env["GMAIL_DISCOVERY_URL"] = f"{base}/discovery/gmail/v1/rest"
    if not settings.TWILIO_API_BASE:
        env["TWILIO_API_BASE"] = base
    if not settings.GMAIL_PUBSUB_TOPIC:
        env["GMAIL_PUBSUB_TOPIC"] = "projects/fte-dev/topics/gmail"  # the sandbox's users.watch
    if settings.GMAIL_PUSH_VERIFICATION_TOKEN is None:
        # Pub/Sub cannot reach a laptop: demo pushes use a shared token, fresh per `fte up`.
        env["GMAIL_PUSH_VERIFICATION_TOKEN"] = secrets.token_urlsafe(24)
    return env
