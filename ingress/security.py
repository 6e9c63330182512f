"""Authenticating the channels' webhooks: Twilio signatures and Pub/Sub push tokens."""

from __future__ import annotations

import hmac
import threading
import time
from urllib.parse import urlsplit, urlunsplit

from fastapi import Request
from google.auth import exceptions as google_exceptions
from google.auth.transport import requests as google_requests
from google.oauth2 import id_token
from prometheus_client import Counter
from twilio.request_validator import RequestValidator

from fte.logs import get_logger
from fte.settings import Settings

log = get_logger("ingress.security")

REJECTED = Counter("ingress_webhook_rejected_total", "Webhook requests refused as unauthenticated",
                   ["webhook", "reason"])

GOOGLE_ISSUERS = {"accounts.google.com", "https://accounts.google.com"}


def security_event(webhook: str, reason: str, request: Request) -> None:
    """Log a refused webhook: who and why, never the body."""
    REJECTED.labels(webhook, reason).inc()
    log.warning("security.webhook_rejected", webhook=webhook, reason=reason,
                client=request.client.host if request.client else None, path=request.url.path)


# --- Twilio --------------------------------------------------------------------------
def public_url(settings: Settings, request: Request) -> str:
    """The URL Twilio signed: PUBLIC_BASE_URL + path + query; behind a proxy, the scheme and
    host the proxy says the client used (X-Forwarded-Proto / X-Forwarded-Host) — the host
    only when it is one of ours (PUBLIC_BASE_URL's or FORWARDED_HOSTS), since anyone can
    send the header."""
    base = urlsplit(settings.PUBLIC_BASE_URL)
    scheme = request.headers.get("x-forwarded-proto", base.scheme).split(",")[0].strip()
    if scheme not in ("http", "https"):
        scheme = base.scheme
    host = request.headers.get("x-forwarded-host", base.netloc).split(",")[0].strip()
    allowed = {base.netloc.lower(), *(h.strip().lower() for h in settings.FORWARDED_HOSTS.split(",")
                                      if h.strip())}
    if host.lower() not in allowed:
        host = base.netloc
    path = base.path.rstrip("/") + request.url.path
    return urlunsplit((scheme, host, path, request.url.query, ""))


def twilio_signature_valid(settings: Settings, request: Request, params: dict[str, str]) -> bool:
    signature = request.headers.get("x-twilio-signature")
    if not signature:
        return False
    validator = RequestValidator(settings.twilio_auth_token())
    return validator.validate(public_url(settings, request), params, signature)


# --- Pub/Sub push (Gmail) ------------------------------------------------------------
class PushAuthError(Exception):
    pass


class _CertsCache:
    """A google-auth transport that keeps GET responses (Google's signing certs) for a few
    minutes, so each push does not fetch them again; Google rotates keys over days."""

    def __init__(self, ttl_s: float = 300.0):
        self._inner = google_requests.Request()
        self._ttl_s = ttl_s
        self._cache: dict[str, tuple[float, object]] = {}
        self._lock = threading.Lock()

    def __call__(self, url, method="GET", body=None, headers=None, timeout=None, **kwargs):
        if method != "GET":
            return self._inner(url, method=method, body=body, headers=headers, timeout=timeout, **kwargs)
        with self._lock:
            hit = self._cache.get(url)
        if hit is not None and time.monotonic() - hit[0] < self._ttl_s:
            return hit[1]
        response = self._inner(url, method=method, headers=headers, timeout=timeout or 10, **kwargs)
        if response.status == 200:
            with self._lock:
                self._cache[url] = (time.monotonic(), response)
        return response


_transport = _CertsCache()


def verify_push_token(settings: Settings, authorization: str | None) -> dict:
    """Claims of a valid Google-signed OIDC token for our audience and service account.

    Blocking (fetches the signing certs): call from a thread.
    """
    if not settings.GMAIL_PUSH_AUDIENCE or not settings.GMAIL_PUSH_SERVICE_ACCOUNT:
        raise PushAuthError("OIDC push authentication not configured")
    if not authorization or not authorization.lower().startswith("bearer "):
        raise PushAuthError("missing bearer token")
    token = authorization.split(" ", 1)[1].strip()
    kwargs = {"certs_url": settings.GMAIL_PUSH_CERTS_URL} if settings.GMAIL_PUSH_CERTS_URL else {}
    try:
        claims = id_token.verify_token(token, _transport, audience=settings.GMAIL_PUSH_AUDIENCE,
                                       clock_skew_in_seconds=10, **kwargs)
    except (ValueError, google_exceptions.GoogleAuthError) as exc:
        raise PushAuthError(f"invalid token: {type(exc).__name__}") from exc
    if claims.get("iss") not in GOOGLE_ISSUERS:
        raise PushAuthError("wrong issuer")
    if claims.get("email") != settings.GMAIL_PUSH_SERVICE_ACCOUNT or not claims.get("email_verified"):
        raise PushAuthError("wrong service account")
    return claims


def shared_token_valid(settings: Settings, token: str | None) -> bool:
    expected = settings.GMAIL_PUSH_VERIFICATION_TOKEN
    if expected is None or not token:
        return False
    return hmac.compare_digest(token.encode(), expected.get_secret_value().encode())
