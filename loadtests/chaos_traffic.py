"""Chaos traffic on all three channels, sent the way the real senders send it.

Every message comes from a sender of its own, so each reply the channel APIs record answers
exactly one inbound message. Clients retry like the real ones: the browser and Twilio on a
refused (5xx/429) or unanswered request, Pub/Sub a push until it is acknowledged. An email
is accepted once a push naming its historyId (or a later one) was acknowledged; during a
"silent Pub/Sub" fault no push is sent, and the next one covers the mail that arrived.
"""

from __future__ import annotations

import base64
import random
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from datetime import UTC, datetime

import httpx

from fte.settings import Settings
from sandbox.demo_traffic import GMAIL_PUSH_PATH, SANDBOX_DELIVER_PATH, gmail_push
from loadtests.payloads import (
    SUBMIT_PATH,
    WHATSAPP_PATH,
    load_questions,
    require_loopback,
    twilio_signature,
    unique_phone,
    web_submission,
    webhook_url,
    whatsapp_form,
)

CHANNELS = ("web", "whatsapp", "email")
RETRYABLE = {429, 500, 502, 503, 504}


@dataclass
class Accepted:
    key: str  # inbound key: "<channel>:<channel message id>"
    recipient: str  # where the reply goes: email address or bare phone number
    at: float  # monotonic


@dataclass
class Traffic:
    settings: Settings
    ingress_url: str
    sandbox_url: str
    total: int
    rate: float
    channels: tuple[str, ...] = CHANNELS
    retry_for_s: float = 300.0
    accepted: list[Accepted] = field(default_factory=list)
    refusals: Counter = field(default_factory=Counter)
    sent: int = 0
    gave_up: int = 0
    finished: bool = False
    pubsub_silent_until: float = 0.0  # monotonic; set by the silent Pub/Sub fault
    _pending_mail: list[tuple[int, str, str]] = field(default_factory=list)  # (historyId, key, to)
    _lock: threading.RLock = field(default_factory=threading.RLock)
    _stop: threading.Event = field(default_factory=threading.Event)
    _senders_done: bool = False

    def __post_init__(self) -> None:
        for url in (self.ingress_url, self.sandbox_url):
            require_loopback(url)

    def stop(self) -> None:
        self._stop.set()

    def run(self) -> None:
        """Send `total` messages at `rate` a second, one sender per channel plus the Pub/Sub pusher."""
        try:
            shares = {c: self.total // len(self.channels) + (1 if i < self.total % len(self.channels) else 0)
                      for i, c in enumerate(self.channels)}
            senders = [threading.Thread(target=self._send_channel, args=(c, n, self.rate * n / self.total),
                                        name=f"traffic-{c}", daemon=True) for c, n in shares.items() if n]
            pusher = threading.Thread(target=self._push_loop, name="traffic-pubsub", daemon=True)
            for t in senders:
                t.start()
            if "email" in shares:
                pusher.start()
            for t in senders:
                t.join()
            self._senders_done = True
            if "email" in shares:
                pusher.join()
        finally:
            self.finished = True

    def _send_channel(self, channel: str, count: int, rate: float) -> None:
        rng = random.Random(f"{channel}-7")
        questions = load_questions()
        started = time.monotonic()
        with httpx.Client(base_url=self.ingress_url, timeout=15.0) as ingress, \
                httpx.Client(base_url=self.sandbox_url, timeout=15.0) as sandbox:
            for i in range(count):
                if self._stop.is_set():
                    break
                with self._lock:
                    self.sent += 1
                if channel == "web":
                    self._web(ingress, rng, questions)
                elif channel == "whatsapp":
                    self._whatsapp(ingress, rng, questions)
                else:
                    self._email(sandbox, rng, questions, i)
                time.sleep(max(0.0, started + (i + 1) / rate - time.monotonic()))

    def _push_loop(self) -> None:
        """Pub/Sub: pushes the newest historyId every half second until every mail is accepted."""
        deadline = None
        with httpx.Client(base_url=self.ingress_url, timeout=15.0) as ingress:
            while True:
                self._push_pending(ingress)
                if self._senders_done:
                    deadline = deadline or time.monotonic() + self.retry_for_s
                    if not self._pending_mail or time.monotonic() > deadline:
                        break
                time.sleep(0.5)
        with self._lock:
            self.gave_up += len(self._pending_mail)

    def _gave_up(self) -> None:
        with self._lock:
            self.gave_up += 1

    def _accept(self, key: str, recipient: str) -> None:
        with self._lock:
            self.accepted.append(Accepted(key, recipient, time.monotonic()))

    def _web(self, client: httpx.Client, rng: random.Random, questions: list[str]) -> None:
        body = web_submission(rng, questions)
        response = self._deliver(client, client.build_request("POST", SUBMIT_PATH, json=body), 202)
        if response is None:
            self._gave_up()
        else:
            self._accept(f"web:{response.json()['ticket_id']}", body["email"])

    def _whatsapp(self, client: httpx.Client, rng: random.Random, questions: list[str]) -> None:
        phone = unique_phone()
        form = whatsapp_form(rng, questions, account_sid=self.settings.TWILIO_ACCOUNT_SID,
                             to=self.settings.TWILIO_WHATSAPP_FROM, sender=phone)
        signature = twilio_signature(self.settings.TWILIO_AUTH_TOKEN.get_secret_value(),
                                     webhook_url(self.settings.PUBLIC_BASE_URL), form)
        request = client.build_request("POST", WHATSAPP_PATH, data=form,
                                       headers={"X-Twilio-Signature": signature})
        if self._deliver(client, request, 200) is None:
            self._gave_up()
        else:
            self._accept(f"whatsapp:{form['MessageSid']}", phone)

    def _email(self, sandbox: httpx.Client, rng: random.Random, questions: list[str], i: int) -> None:
        sender = f"chaos-{uuid.uuid4().hex[:10]}@example.com"
        msg = EmailMessage()
        msg["From"], msg["To"] = f"Chaos {i} <{sender}>", self.settings.GMAIL_MAILBOX
        msg["Subject"], msg["Date"] = f"Question {i}", format_datetime(datetime.now(UTC))
        msg["Message-ID"] = make_msgid(domain="example.com")
        msg.set_content(f"Hello,\n\n{rng.choice(questions)}\n\nThanks\n")
        delivered = sandbox.post(SANDBOX_DELIVER_PATH, json={
            "raw": base64.urlsafe_b64encode(msg.as_bytes()).decode(), "mailbox": self.settings.GMAIL_MAILBOX})
        delivered.raise_for_status()  # the mail is in the mailbox: Gmail has it
        d = delivered.json()
        with self._lock:
            self._pending_mail.append((int(d["historyId"]), f"email:{d['id']}", sender))

    def _push_pending(self, client: httpx.Client) -> None:
        """One push for the newest historyId covers every mail before it."""
        if not self._pending_mail or time.monotonic() < self.pubsub_silent_until:
            return
        with self._lock:
            newest = max(h for h, _k, _t in self._pending_mail)
        token = self.settings.GMAIL_PUSH_VERIFICATION_TOKEN
        params = {"token": token.get_secret_value()} if token else {}
        request = client.build_request("POST", GMAIL_PUSH_PATH, params=params,
                                       json=gmail_push(self.settings, newest))
        if self._deliver(client, request, (200, 204), retry_for_s=30.0) is not None:
            with self._lock:
                covered = [m for m in self._pending_mail if m[0] <= newest]
                self._pending_mail = [m for m in self._pending_mail if m[0] > newest]
            for _h, key, to in covered:
                self._accept(key, to)

    def _deliver(self, client: httpx.Client, request: httpx.Request, ok: int | tuple[int, ...],
                 retry_for_s: float | None = None) -> httpx.Response | None:
        """Retry like Twilio, Pub/Sub and a browser do, until accepted or the window closes."""
        ok_codes = (ok,) if isinstance(ok, int) else ok
        deadline = time.monotonic() + (retry_for_s or self.retry_for_s)
        while time.monotonic() < deadline and not self._stop.is_set():
            try:
                response = client.send(request)
            except httpx.HTTPError as exc:
                self.refusals[type(exc).__name__] += 1
                time.sleep(1.0)
                continue
            if response.status_code in ok_codes:
                return response
            self.refusals[str(response.status_code)] += 1
            if response.status_code not in RETRYABLE:
                print(f"  not retryable: {response.status_code} {response.text[:200]}", flush=True)
                return None
            time.sleep(min(5.0, float(response.headers.get("Retry-After", 1))))
        return None
