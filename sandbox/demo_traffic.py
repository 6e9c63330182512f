"""Demo traffic: real customer messages sent through the ingress's public endpoints, signed
as the channels sign them, so every stage (ingress, flow, metrics, console) comes alive.

- WhatsApp: the form Twilio posts to /webhooks/whatsapp, with X-Twilio-Signature computed by
  the twilio library over PUBLIC_BASE_URL + path with TWILIO_AUTH_TOKEN.
- Web: the support form's JSON to /support/submit.
- Email: the mail is delivered into the local Gmail API server's mailbox
  (/_sandbox/gmail/...), then a Pub/Sub push names the new historyId at /webhooks/gmail,
  authenticated with the development verification token.

Messages come from ../shared/data (Bitext customer-support questions and HINT3 chatbot
messages). A small, stable set of customers writes on several channels, so the console
shows one person across email, WhatsApp and the web form. Traffic goes to this machine only.
"""

from __future__ import annotations

import base64
import csv
import json
import random
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path

import httpx

from fte.logs import get_logger
from fte.settings import Settings, get_settings
from sandbox.webhooks import require_loopback, twilio_signature, webhook_url

log = get_logger(__name__)

WHATSAPP_PATH = "/webhooks/whatsapp"
GMAIL_PUSH_PATH = "/webhooks/gmail"
WEB_SUBMIT_PATH = "/support/submit"
SANDBOX_DELIVER_PATH = "/_sandbox/gmail/deliver"
WEB_CATEGORIES = ("general", "technical", "billing", "feedback", "bug_report")
CHANNELS = ("email", "whatsapp", "web")


@dataclass(frozen=True)
class DemoCustomer:
    name: str
    email: str
    phone: str
    channels: tuple[str, ...]  # where this customer writes, most used first


# Stable people (fictional +1 555 01xx numbers, example.* mailboxes), most on several channels.
CUSTOMERS: tuple[DemoCustomer, ...] = (
    DemoCustomer("Maya Patel", "maya.patel@example.com", "+15550100101", ("whatsapp", "email", "web")),
    DemoCustomer("Tom Becker", "tom.becker@example.org", "+15550100102", ("email", "web")),
    DemoCustomer("Lucía Gómez", "lucia.gomez@example.net", "+15550100103", ("web", "whatsapp")),
    DemoCustomer("Kwame Mensah", "kwame.mensah@example.com", "+15550100104", ("whatsapp", "web")),
    DemoCustomer("Hana Sato", "hana.sato@example.org", "+15550100105", ("email", "whatsapp", "web")),
    DemoCustomer("Omar Haddad", "omar.haddad@example.net", "+15550100106", ("web", "email")),
    DemoCustomer("Ingrid Larsen", "ingrid.larsen@example.com", "+15550100107", ("whatsapp",)),
    DemoCustomer("Diego Silva", "diego.silva@example.org", "+15550100108", ("email",)),
)


@dataclass(frozen=True)
class DemoMessage:
    text: str
    source: str  # bitext:<intent> or hint3:<file>:<label>


def load_messages(data_dir: Path | None = None, *, seed: int = 11, limit: int = 3000) -> list[DemoMessage]:
    """Bitext questions (every intent, escalating ones too) and HINT3 messages long enough
    for the web form (10+ characters), shuffled reproducibly."""
    data_dir = data_dir or get_settings().SHARED_DATA_DIR
    found: list[DemoMessage] = []
    bitext = data_dir / "bitext" / "bitext_dev.csv"
    if bitext.is_file():
        with bitext.open(newline="") as f:
            for row in csv.DictReader(f):
                text = (row.get("instruction") or "").strip()
                if 10 <= len(text) <= 1000:
                    found.append(DemoMessage(text, f"bitext:{row.get('intent')}"))
    for path in sorted((data_dir / "hint3").glob("*.csv")):
        with path.open(newline="") as f:
            for row in csv.DictReader(f):
                text = (row.get("sentence") or "").strip()
                if 10 <= len(text) <= 1000:
                    found.append(DemoMessage(text, f"hint3:{path.stem}:{row.get('label')}"))
    if not found:
        raise SystemExit(f"no messages found under {data_dir} (expected bitext/ and hint3/ CSVs)")
    rng = random.Random(seed)
    rng.shuffle(found)
    return found[:limit]


def subject_for(text: str) -> str:
    """A short subject from the message's first words (the web form needs 5+ characters)."""
    words = text.split()
    subject = " ".join(words[:7])
    if len(words) > 7:
        subject += "..."
    return subject if len(subject) >= 5 else f"Question: {subject}"


# --- request builders (pure) -------------------------------------------------------------
def whatsapp_request(settings: Settings, customer: DemoCustomer, text: str) -> tuple[str, dict[str, str], dict[str, str]]:
    """(path, form fields, headers) exactly as Twilio would post an inbound WhatsApp text."""
    form = {
        "MessageSid": f"SM{uuid.uuid4().hex}",
        "SmsMessageSid": f"SM{uuid.uuid4().hex}",
        "AccountSid": settings.TWILIO_ACCOUNT_SID,
        "From": f"whatsapp:{customer.phone}",
        "To": settings.TWILIO_WHATSAPP_FROM,
        "Body": text,
        "ProfileName": customer.name,
        "WaId": customer.phone.lstrip("+"),
        "NumMedia": "0",
        "NumSegments": "1",
        "ApiVersion": "2010-04-01",
    }
    signature = twilio_signature(settings.TWILIO_AUTH_TOKEN.get_secret_value(),
                                 webhook_url(settings.PUBLIC_BASE_URL, WHATSAPP_PATH), form)
    return WHATSAPP_PATH, form, {"X-Twilio-Signature": signature}


def web_request(customer: DemoCustomer, text: str, rng: random.Random) -> tuple[str, dict]:
    body = {
        "name": customer.name,
        "email": customer.email,
        "subject": subject_for(text),
        "message": text,
        "category": rng.choice(WEB_CATEGORIES),
    }
    if "whatsapp" in customer.channels:  # links the phone to the email: one customer
        body["phone"] = customer.phone
    return WEB_SUBMIT_PATH, body


def email_raw(settings: Settings, customer: DemoCustomer, text: str) -> bytes:
    msg = EmailMessage()
    msg["From"] = f"{customer.name} <{customer.email}>"
    msg["To"] = settings.GMAIL_MAILBOX
    msg["Subject"] = subject_for(text)
    msg["Date"] = format_datetime(datetime.now(UTC))
    msg["Message-ID"] = make_msgid(domain=customer.email.split("@", 1)[1])
    msg.set_content(f"Hello,\n\n{text}\n\nThanks,\n{customer.name}\n")
    return msg.as_bytes()


def gmail_push(settings: Settings, history_id: str | int) -> dict:
    """The JSON body Pub/Sub pushes for a Gmail watch notification."""
    data = json.dumps({"emailAddress": settings.GMAIL_MAILBOX, "historyId": int(history_id)})
    return {
        "message": {
            "data": base64.b64encode(data.encode()).decode(),
            "messageId": str(uuid.uuid4().int % 10**16),
            "publishTime": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        },
        "subscription": "projects/fte-demo/subscriptions/gmail-push",
    }


# --- sending -----------------------------------------------------------------------------
class DemoTraffic:
    """Sends `rate` messages a second for `duration` seconds (0: until stopped)."""

    def __init__(self, settings: Settings, *, ingress_url: str, sandbox_url: str,
                 channels: tuple[str, ...] = CHANNELS, seed: int = 11, workers: int = 8):
        for url in (ingress_url, sandbox_url):
            require_loopback(url)
        self.settings = settings
        self.ingress = httpx.Client(base_url=ingress_url, timeout=15)
        self.sandbox = httpx.Client(base_url=sandbox_url, timeout=15)
        self.channels = channels
        self.rng = random.Random(seed)
        self.messages = load_messages(seed=seed)
        self.results: Counter[str] = Counter()
        self.latencies_ms: list[float] = []
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="demo")
        self._stop = threading.Event()

    def stop(self) -> None:
        self._stop.set()

    def pick(self) -> tuple[DemoCustomer, str, DemoMessage]:
        customer = self.rng.choice(CUSTOMERS)
        usable = [c for c in customer.channels if c in self.channels] or list(self.channels)
        # Mostly the customer's usual channel, sometimes another one they use.
        channel = usable[0] if self.rng.random() < 0.6 else self.rng.choice(usable)
        return customer, channel, self.rng.choice(self.messages)

    def send(self, customer: DemoCustomer, channel: str, message: DemoMessage) -> str:
        started = time.perf_counter()
        try:
            if channel == "whatsapp":
                path, form, headers = whatsapp_request(self.settings, customer, message.text)
                response = self.ingress.post(path, data=form, headers=headers)
            elif channel == "web":
                path, body = web_request(customer, message.text, self.rng)
                response = self.ingress.post(path, json=body)
            else:
                response = self.send_email(customer, message.text)
            outcome = f"{channel} {response.status_code}"
        except httpx.HTTPError as exc:
            outcome = f"{channel} {type(exc).__name__}"
        with self._lock:
            self.results[outcome] += 1
            self.latencies_ms.append((time.perf_counter() - started) * 1000)
        if not outcome.endswith((" 200", " 202", " 204")):
            log.warning("demo.send_failed", channel=channel, outcome=outcome)
        return outcome

    def send_email(self, customer: DemoCustomer, text: str) -> httpx.Response:
        delivered = self.sandbox.post(SANDBOX_DELIVER_PATH, json={
            "raw": base64.urlsafe_b64encode(email_raw(self.settings, customer, text)).decode(),
            "mailbox": self.settings.GMAIL_MAILBOX,
        })
        delivered.raise_for_status()
        history_id = delivered.json()["historyId"]
        token = self.settings.GMAIL_PUSH_VERIFICATION_TOKEN
        params = {"token": token.get_secret_value()} if token else {}
        return self.ingress.post(GMAIL_PUSH_PATH, params=params, json=gmail_push(self.settings, history_id))

    def run(self, rate: float, duration: float) -> Counter[str]:
        if rate <= 0:
            raise ValueError("rate must be positive")
        interval = 1.0 / rate
        started = time.monotonic()
        next_at = started
        futures = []
        while not self._stop.is_set() and (duration <= 0 or time.monotonic() - started < duration):
            futures.append(self._pool.submit(self.send, *self.pick()))
            next_at += interval
            self._stop.wait(max(0.0, next_at - time.monotonic()))
            futures = [f for f in futures if not f.done()]
        for f in futures:
            f.result()
        self._pool.shutdown(wait=True)
        return self.results

    def wait_for_ingress(self, timeout: float = 120.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not self._stop.is_set():
            try:
                self.ingress.get("/health")  # any answer: it is up (503 just means degraded)
                return True
            except httpx.HTTPError:
                pass
            self._stop.wait(2)
        return False

    def summary(self) -> str:
        total = sum(self.results.values())
        lat = sorted(self.latencies_ms)
        p95 = lat[int(0.95 * (len(lat) - 1))] if lat else 0.0
        lines = [f"sent {total} message(s); p95 request latency {p95:.0f} ms"]
        lines += [f"  {k:<28} {v}" for k, v in sorted(self.results.items())]
        return "\n".join(lines)
