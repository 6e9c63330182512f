"""Local server speaking Twilio's Messages API (the part the WhatsApp sender uses).

- `POST /2010-04-01/Accounts/{sid}/Messages.json` (form: To, From, Body): basic auth must
  be the configured account SID and auth token; records the message, answers 201 with the
  Message resource.
  ContentSid + ContentVariables (an approved template) instead of Body; StatusCallback:
  the sandbox then posts Twilio's signed status callbacks there (queued, sent, delivered,
  read), or `failed` with an error code when a delivery fault is set.
- `GET  /2010-04-01/Accounts/{sid}/Messages.json?To=&From=`: newest first, Twilio paging.
Test/demo helpers under `/_sandbox/twilio/`: `sent` (list), `faults`, `reset`. Faults:
  fail_next / fail_for_s: the next N calls (or S seconds) answer `status` (503) unprocessed;
  accept_then_fail: the next N sends are recorded (the message goes out) and then answer 503;
  delay_s: sends are recorded, then the answer waits S seconds (a client timeout);
  delivery_error: the next N sends' callbacks end in `failed` with this code (63016:
  outside the 24-hour session window).
"""

from __future__ import annotations

import base64
import json
import queue
import secrets
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime

from fastapi import APIRouter, Form, HTTPException, Query, Request
from pydantic import BaseModel, Field

router = APIRouter()
MAX_BODY_CHARS = 1600  # Twilio's own limit per message


@dataclass
class TwilioSandbox:
    account_sid: str
    auth_token: str
    messages: list[dict] = field(default_factory=list)
    fail_remaining: int = 0
    fail_until: float = 0.0
    fail_status: int = 503
    accept_then_fail: int = 0
    delay_s: float = 0.0
    delivery_error: int | None = None
    delivery_error_count: int = 0
    calls: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def maybe_fail(self) -> None:
        with self._lock:
            self.calls += 1
            if self.fail_remaining > 0:
                self.fail_remaining -= 1
                raise HTTPException(self.fail_status, "injected fault")
            if time.monotonic() < self.fail_until:
                raise HTTPException(self.fail_status, "injected fault")

    def take(self, name: str) -> bool:
        """Consume one of the counted faults `name`."""
        with self._lock:
            if getattr(self, name) > 0:
                setattr(self, name, getattr(self, name) - 1)
                return True
            return False

    def record(self, to: str, from_: str, body: str) -> dict:
        now = format_datetime(datetime.now(UTC), usegmt=True)
        sid = "SM" + secrets.token_hex(16)
        message = {
            "sid": sid, "account_sid": self.account_sid, "to": to, "from": from_, "body": body,
            "status": "queued", "direction": "outbound-api", "num_segments": "1",
            "date_created": now, "date_updated": now, "date_sent": None, "price": None,
            "error_code": None, "error_message": None, "api_version": "2010-04-01",
            "uri": f"/2010-04-01/Accounts/{self.account_sid}/Messages/{sid}.json",
        }
        with self._lock:
            self.messages.append(message)
        return message


def _sandbox(request: Request) -> TwilioSandbox:
    return request.app.state.twilio_sandbox


def _authorize(request: Request, sid: str) -> TwilioSandbox:
    sandbox = _sandbox(request)
    header = request.headers.get("authorization", "")
    try:
        user, _, password = base64.b64decode(header.removeprefix("Basic ")).decode().partition(":")
    except ValueError:
        user = password = ""
    if not header.startswith("Basic ") or user != sandbox.account_sid \
            or not secrets.compare_digest(password, sandbox.auth_token) or sid != sandbox.account_sid:
        raise HTTPException(401, "Authenticate")
    return sandbox


class StatusCallbacks:
    """Twilio's status callbacks, posted in order by one worker thread with one HTTP client
    (a thread and a client per message would slow the server under load)."""

    def __init__(self, sandbox: TwilioSandbox):
        self.sandbox = sandbox
        self.queue: queue.Queue = queue.Queue()
        self.thread: threading.Thread | None = None

    def submit(self, url: str, message: dict, error_code: int | None) -> None:
        if self.thread is None:
            self.thread = threading.Thread(target=self._run, name="twilio-callbacks", daemon=True)
            self.thread.start()
        self.queue.put((url, message, error_code))

    def _run(self) -> None:
        import httpx
        from twilio.request_validator import RequestValidator

        validator = RequestValidator(self.sandbox.auth_token)
        with httpx.Client(timeout=10) as client:
            while True:
                url, message, error_code = self.queue.get()
                for form in self._forms(message, error_code):
                    try:
                        client.post(url, data=form,
                                    headers={"X-Twilio-Signature": validator.compute_signature(url, form)})
                    except httpx.HTTPError:
                        break  # Twilio does not retry status callbacks either

    def _forms(self, message: dict, error_code: int | None):
        sandbox = self.sandbox
        statuses = ["queued", "failed"] if error_code else ["queued", "sent", "delivered", "read"]
        for status in statuses:
            form = {"MessageSid": message["sid"], "SmsSid": message["sid"],
                    "AccountSid": sandbox.account_sid, "From": message["from"], "To": message["to"],
                    "MessageStatus": status, "SmsStatus": status, "ApiVersion": "2010-04-01",
                    "ChannelPrefix": "whatsapp"}
            if status == "failed":
                form.update(ErrorCode=str(error_code), ErrorMessage=(
                    "Message failed to send because more than 24 hours have passed since the "
                    "customer last replied" if error_code == 63016 else "failed"))
            with sandbox._lock:
                message["status"] = status
                if status == "failed":
                    message["error_code"] = error_code
            yield form


@router.post("/2010-04-01/Accounts/{sid}/Messages.json", status_code=201, tags=["twilio"])
def create_message(sid: str, request: Request, To: str = Form(...), From: str = Form(...),
                   Body: str | None = Form(None), ContentSid: str | None = Form(None),
                   ContentVariables: str | None = Form(None),
                   StatusCallback: str | None = Form(None)) -> dict:
    sandbox = _authorize(request, sid)
    sandbox.maybe_fail()
    if ContentSid:
        if not ContentSid.startswith("HX"):
            raise HTTPException(400, "ContentSid: not a Content SID")
        try:
            json.loads(ContentVariables or "{}")
        except ValueError as exc:
            raise HTTPException(400, "ContentVariables: not JSON") from exc
        Body = ContentVariables or "{}"  # the template's variables identify the send here
    if not Body:
        raise HTTPException(400, "Body: required without ContentSid")
    if len(Body) > MAX_BODY_CHARS:
        raise HTTPException(400, "Body: exceeds 1600 characters")
    if not To.startswith("whatsapp:+"):
        raise HTTPException(400, "To: not a WhatsApp address")
    message = sandbox.record(To, From, Body)
    error_code = sandbox.delivery_error if sandbox.take("delivery_error_count") else None
    if StatusCallback:
        request.app.state.twilio_callbacks.submit(StatusCallback, message, error_code)
    if sandbox.take("accept_then_fail"):
        raise HTTPException(503, "injected fault after the message was accepted")
    if sandbox.delay_s:
        time.sleep(sandbox.delay_s)
    return message


@router.get("/2010-04-01/Accounts/{sid}/Messages.json", tags=["twilio"])
def list_messages(sid: str, request: Request, To: str | None = None,
                  From: str | None = Query(None), PageSize: int = Query(50, ge=1, le=1000),
                  Page: int = Query(0, ge=0)) -> dict:
    sandbox = _authorize(request, sid)
    sandbox.maybe_fail()
    with sandbox._lock:
        found = [m for m in reversed(sandbox.messages)
                 if (To is None or m["to"] == To) and (From is None or m["from"] == From)]
    page = found[Page * PageSize:(Page + 1) * PageSize]
    base = f"/2010-04-01/Accounts/{sid}/Messages.json"
    more = (Page + 1) * PageSize < len(found)
    return {"messages": page, "page": Page, "page_size": PageSize, "start": Page * PageSize,
            "end": Page * PageSize + len(page), "uri": base, "first_page_uri": base,
            "previous_page_uri": None,
            "next_page_uri": f"{base}?PageSize={PageSize}&Page={Page + 1}" + (
                f"&To={To}" if To else "") if more else None}


class Faults(BaseModel):
    fail_next: int = Field(0, ge=0)
    fail_for_s: float = Field(0.0, ge=0)
    status: int = Field(503, ge=400, le=599)
    accept_then_fail: int = Field(0, ge=0)
    delay_s: float = Field(0.0, ge=0, le=120)
    delivery_error: int | None = None
    delivery_error_count: int = Field(0, ge=0)


@router.get("/_sandbox/twilio/sent", tags=["sandbox"])
def list_sent(request: Request, to: str | None = None) -> dict:
    sandbox = _sandbox(request)
    with sandbox._lock:
        sent = [m for m in sandbox.messages if to is None or m["to"] == to]
    return {"messages": sent, "calls": sandbox.calls}


@router.post("/_sandbox/twilio/faults", tags=["sandbox"])
def set_faults(faults: Faults, request: Request) -> dict:
    sandbox = _sandbox(request)
    with sandbox._lock:
        sandbox.fail_remaining = faults.fail_next
        sandbox.fail_until = time.monotonic() + faults.fail_for_s if faults.fail_for_s else 0.0
        sandbox.fail_status = faults.status
        sandbox.accept_then_fail, sandbox.delay_s = faults.accept_then_fail, faults.delay_s
        sandbox.delivery_error = faults.delivery_error
        sandbox.delivery_error_count = faults.delivery_error_count if faults.delivery_error else 0
    return faults.model_dump()


@router.post("/_sandbox/twilio/reset", tags=["sandbox"])
def reset(request: Request) -> dict:
    sandbox = _sandbox(request)
    with sandbox._lock:
        sandbox.messages.clear()
        sandbox.fail_remaining, sandbox.fail_until, sandbox.calls = 0, 0.0, 0
        sandbox.accept_then_fail, sandbox.delay_s, sandbox.delivery_error_count = 0, 0.0, 0
    return {"ok": True}


def install(app, settings) -> None:
    app.state.twilio_sandbox = TwilioSandbox(settings.TWILIO_ACCOUNT_SID,
                                             settings.TWILIO_AUTH_TOKEN.get_secret_value())
    app.state.twilio_callbacks = StatusCallbacks(app.state.twilio_sandbox)
    app.include_router(router)
