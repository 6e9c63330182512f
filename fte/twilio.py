"""The Twilio client used by the WhatsApp reply sender.

Production talks to https://api.twilio.com. Development and tests set TWILIO_API_BASE to a
local server speaking the Messages API (`sandbox/twilio.py`); the SDK's own HTTP
client is kept and only the host is rewritten, so requests, auth and errors are the real ones.
"""

from __future__ import annotations

from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client

from fte.settings import Settings

TWILIO_API = "https://api.twilio.com"


class RewritingHttpClient(TwilioHttpClient):
    """Sends what the SDK builds for api.twilio.com to `base` instead."""

    def __init__(self, base: str, **kwargs):
        super().__init__(**kwargs)
        self.base = base.rstrip("/")

    def request(self, method, url, *args, **kwargs):
        if url.startswith(TWILIO_API):
            url = self.base + url[len(TWILIO_API):]
        return super().request(method, url, *args, **kwargs)


def build_twilio_client(settings: Settings, *, timeout: float = 10.0) -> Client:
    token = settings.twilio_auth_token()  # refuses the development token in production
    if settings.TWILIO_API_BASE:
        http = RewritingHttpClient(settings.TWILIO_API_BASE, timeout=timeout)
    else:
        http = TwilioHttpClient(timeout=timeout)
    return Client(settings.TWILIO_ACCOUNT_SID, token, http_client=http)
