"""Signing and addressing of simulated channel webhooks (demo traffic, load and chaos tests)."""

from __future__ import annotations

from urllib.parse import urlsplit

from twilio.request_validator import RequestValidator

WHATSAPP_PATH = "/webhooks/whatsapp"
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}


def twilio_signature(auth_token: str, url: str, params: dict[str, str]) -> str:
    """X-Twilio-Signature exactly as Twilio computes it (HMAC-SHA1 over URL + sorted params)."""
    return RequestValidator(auth_token).compute_signature(url, params)


def webhook_url(public_base_url: str, path: str = WHATSAPP_PATH) -> str:
    """The URL Twilio is configured to call, which the ingress validates signatures against."""
    return public_base_url.rstrip("/") + path


def require_loopback(url: str) -> None:
    """Simulated traffic goes to this machine only."""
    host = urlsplit(url).hostname
    if host not in LOOPBACK_HOSTS:
        raise SystemExit(f"refusing to send test traffic to {host!r}: only 127.0.0.1 is allowed")
