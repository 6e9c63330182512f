"""Web-form identifiers proved by a one-time code or link (`sinks/verification.py`).

    POST /support/verify/start    {ticket_id, kind}        -> code (and link) sent to the ticket's contact
    POST /support/verify/confirm  {ticket_id, kind, code}  -> verified: linked to the customer
    GET  /support/verify/{token}                           -> the emailed link

Only then do the email or phone typed into the form link (or merge) customer records.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Path
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from fte.logs import get_logger
from ingress.deps import RateLimitedByIp, ServicesDep
from ingress.routes.support import TICKET_ID
from sinks import verification as v

log = get_logger(__name__)
router = APIRouter(prefix="/support/verify", tags=["support"])

TOKEN = r"^[A-Za-z0-9_-]{40,64}$"


class VerifyStart(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ticket_id: Annotated[str, Field(pattern=TICKET_ID)]
    kind: Literal["email", "phone"]


class VerifyConfirm(VerifyStart):
    code: Annotated[str, Field(pattern=r"^\s*\d{6}\s*$")]


class VerifyStarted(BaseModel):
    sent_to: str
    expires_in_s: int


class VerifyConfirmed(BaseModel):
    kind: str
    verified: bool = True


async def _run(fn, **kwargs):
    try:
        return await run_in_threadpool(fn, **kwargs)
    except v.VerificationError as exc:
        raise HTTPException(exc.status, exc.detail) from exc


@router.post("/start", status_code=202, response_model=VerifyStarted, dependencies=[RateLimitedByIp],
             summary="Send a one-time code (and, for email, a link) to the ticket's email or phone")
async def start_verification(body: VerifyStart, services: ServicesDep) -> VerifyStarted:
    started = await _run(v.start, database_url=services.settings.database_url, ticket_id=body.ticket_id,
                         kind=body.kind, public_base_url=services.settings.PUBLIC_BASE_URL)
    log.info("verify.started", ticket_id=body.ticket_id, kind=body.kind)
    return VerifyStarted(sent_to=started.sent_to, expires_in_s=started.expires_in_s)


@router.post("/confirm", response_model=VerifyConfirmed, dependencies=[RateLimitedByIp],
             summary="Confirm the ticket's email or phone with the code sent to it")
async def confirm_verification(body: VerifyConfirm, services: ServicesDep) -> VerifyConfirmed:
    done = await _run(v.confirm_code, database_url=services.settings.database_url,
                      ticket_id=body.ticket_id, kind=body.kind, code=body.code)
    log.info("verify.confirmed", ticket_id=body.ticket_id, kind=done.kind, merged=done.merged)
    return VerifyConfirmed(kind=done.kind)


@router.get("/{token}", response_class=HTMLResponse, dependencies=[RateLimitedByIp],
            summary="Confirm an email address by its one-time link")
async def confirm_link(services: ServicesDep, token: str = Path(pattern=TOKEN)) -> HTMLResponse:
    done = await _run(v.confirm_link, database_url=services.settings.database_url, token=token)
    log.info("verify.confirmed", kind=done.kind, merged=done.merged, by="link")
    return HTMLResponse("<!doctype html><title>Confirmed</title>"
                        "<p>Thank you: your email address is confirmed. You can close this page.</p>")
