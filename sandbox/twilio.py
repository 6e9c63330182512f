"""Local server speaking Twilio's Messages API (the part the WhatsApp sender uses).

- `POST /2010-04-01/Accounts/{sid}/Messages.json` (form: To, From, Body): basic auth must
  be the configured account SID and auth token; records the message, answers 201 with the
  Message resource.
- `GET  /2010-04-01/Accounts/{sid}/Messages.json?To=&From=`: newest first, Twilio paging.
Test/demo helpers under `/_sandbox/twilio/`: `sent` (list), `faults` (503 for the next N
calls and/or for S seconds), `reset`.
"""

from __future__ import annotations

import base64
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


@router.post("/2010-04-01/Accounts/{sid}/Messages.json", status_code=201, tags=["twilio"])
def create_message(sid: str, request: Request, To: str = Form(...), From: str = Form(...),
                   Body: str = Form(...)) -> dict:
    sandbox = _authorize(request, sid)
    sandbox.maybe_fail()
    if len(Body) > MAX_BODY_CHARS:
        raise HTTPException(400, "Body: exceeds 1600 characters")
    if not To.startswith("whatsapp:+"):
        raise HTTPException(400, "To: not a WhatsApp address")
    return sandbox.record(To, From, Body)


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
    return {"fail_next": faults.fail_next, "fail_for_s": faults.fail_for_s}


@router.post("/_sandbox/twilio/reset", tags=["sandbox"])
def reset(request: Request) -> dict:
    sandbox = _sandbox(request)
    with sandbox._lock:
        sandbox.messages.clear()
        sandbox.fail_remaining, sandbox.fail_until, sandbox.calls = 0, 0.0, 0
    return {"ok": True}


def install(app, settings) -> None:
    app.state.twilio_sandbox = TwilioSandbox(settings.TWILIO_ACCOUNT_SID,
                                             settings.TWILIO_AUTH_TOKEN.get_secret_value())
    app.include_router(router)
