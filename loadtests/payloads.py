"""Requests a real customer or channel would send to the ingress, for load and chaos tests.

Contracts (ingress/): POST /support/submit JSON -> 202 {ticket_id}; GET /support/ticket/{id};
POST /webhooks/whatsapp, form-encoded Twilio fields signed with X-Twilio-Signature.
Every sender is distinct (fictional 555 numbers, example.com mailboxes) so per-identity rate
limits and human takeover never couple two simulated customers.
"""

from __future__ import annotations

import csv
import random
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx

from fte.settings import get_settings
from sandbox.webhooks import (  # noqa: F401 -- re-exported for the load tests
    LOOPBACK_HOSTS,
    WHATSAPP_PATH,
    require_loopback,
    twilio_signature,
    webhook_url,
)

SUBMIT_PATH = "/support/submit"
TICKET_PATH = "/support/ticket/{ticket_id}"
CATEGORIES = ("general", "technical", "billing", "feedback", "bug_report")

# Questions the demo knowledge base answers; replaced by Bitext questions when the data is there.
_FALLBACK_QUESTIONS = (
    "How can I track the order I placed last week?",
    "What payment methods do you accept for online orders?",
    "How do I change the shipping address on my order?",
    "I forgot my password, how do I reset it?",
    "How long does delivery usually take to Europe?",
    "Can I change the size of an item after ordering?",
    "How do I create an account on your shop?",
    "Where can I download the invoice for my purchase?",
    "How do I subscribe to your newsletter?",
    "Is there a way to check the delivery options for my country?",
)
_BITEXT = get_settings().SHARED_DATA_DIR / "bitext" / "bitext_dev.csv"
# Intents that escalate by policy; load traffic should mostly exercise the answer path.
_ESCALATING = {"get_refund", "contact_human_agent", "complaint"}


def load_questions(path: Path = _BITEXT, limit: int = 2000, seed: int = 7) -> list[str]:
    """Customer questions: a sample of Bitext's when the shared data is there, else built-in."""
    if not path.is_file():
        return list(_FALLBACK_QUESTIONS)
    with path.open(newline="") as f:
        questions = [
            text for row in csv.DictReader(f)
            if row.get("intent") not in _ESCALATING
            and 10 <= len(text := (row.get("instruction") or "").strip()) <= 1000
        ]
    if not questions:
        return list(_FALLBACK_QUESTIONS)
    return random.Random(seed).sample(questions, min(limit, len(questions)))


def unique_phone() -> str:
    """A distinct E.164 number per call, in the fictional +1 555 range."""
    return f"+1555{uuid.uuid4().int % 10_000_000:07d}"


def web_submission(rng: random.Random, questions: list[str], *, with_phone: bool = False) -> dict:
    token = uuid.uuid4().hex[:12]
    body = {
        "name": f"Load Tester {token[:4]}",
        "email": f"load+{token}@example.com",
        "subject": f"Question {token[:6]} about my order",
        "message": rng.choice(questions),
        "category": rng.choice(CATEGORIES),
    }
    if with_phone:
        body["phone"] = unique_phone()
    return body


def whatsapp_form(rng: random.Random, questions: list[str], *, account_sid: str,
                  to: str, sender: str | None = None) -> dict[str, str]:
    """The fields Twilio posts for an inbound WhatsApp text message."""
    return {
        "MessageSid": f"SM{uuid.uuid4().hex}",
        "SmsMessageSid": f"SM{uuid.uuid4().hex}",
        "AccountSid": account_sid,
        "From": f"whatsapp:{sender or unique_phone()}",
        "To": to,
        "Body": rng.choice(questions),
        "ProfileName": "Load Tester",
        "NumMedia": "0",
        "NumSegments": "1",
        "ApiVersion": "2010-04-01",
    }


class IngressNotReady(RuntimeError):
    pass


def wait_until_healthy(base_url: str, *, alive: Callable[[], bool] = lambda: True,
                       timeout_s: float = 60.0, interval_s: float = 0.3) -> None:
    """Poll `GET /health` until it answers 200; fail early if the server process died."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not alive():
            raise IngressNotReady(f"the ingress at {base_url} exited during start-up")
        try:
            if httpx.get(f"{base_url}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(interval_s)
    raise IngressNotReady(f"ingress not healthy at {base_url} within {timeout_s:.0f}s")
