"""A local server speaking the Gmail REST API (v1), for development, demos and tests.

google-api-python-client reads the discovery document served here (Google's own gmail v1
document with its root URL pointed at this server) and then calls the real paths:
users.getProfile, users.watch/stop, users.history.list, users.messages.list/get/send
(messages.list understands labelIds and the `rfc822msgid:` search term).
One mailbox per address; historyIds grow as mail arrives or is sent. With a state directory
(SANDBOX_STATE_DIR; FTE_DATA_DIR/sandbox in development) the mailboxes are kept in
`gmail-mailboxes.json` there, so a restart behaves like Gmail (history ids carry on).

Pub/Sub: while a mailbox is watched (users.watch) and a push endpoint is set, each inbound
mail is pushed there as Pub/Sub's envelope {message: {data: base64 {emailAddress, historyId}}}.

Test/demo helpers (not part of the Gmail API), under /_sandbox/gmail/:
  POST deliver   {raw (base64url RFC 822) | from,subject,text[,html,in_reply_to]} -> {id, threadId, historyId}
  GET  sent      mail sent through users.messages.send (decoded)
  GET  watch     the mailbox's watch (topicName, expiration) or null
  POST pubsub    {"push_endpoint": url, "silent": bool}: where pushes go; silent drops them
  POST faults    {"status": 503, "count": N}: the next N Gmail API calls fail with it;
                 {"deliver_during_list": N}: the next N messages.list calls see a new mail
                 arrive just before they answer (mail arriving during a resync)
  POST expire-history  history before the current point is gone (history.list -> 404)
  POST reset     empty every mailbox
"""

from __future__ import annotations

import base64
import copy
import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage, Message
from email.utils import format_datetime, make_msgid, parseaddr
from pathlib import Path
from typing import Annotated, Literal

import googleapiclient
from fastapi import APIRouter, Body, HTTPException, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

DISCOVERY_SOURCE = Path(googleapiclient.__file__).parent / "discovery_cache" / "documents" / "gmail.v1.json"
FIRST_HISTORY_ID = 1000
SAVE_EVERY_S = 0.5  # how often, at most, a local mailbox is rewritten to its state file


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def unb64url(data: str) -> bytes:
    return base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))


@dataclass
class StoredMessage:
    id: str
    thread_id: str
    raw: bytes
    label_ids: list[str]
    history_id: int
    internal_date_ms: int
    message_id_header: str | None


@dataclass
class Mailbox:
    address: str
    history_id: int = FIRST_HISTORY_ID
    oldest_history_id: int = FIRST_HISTORY_ID  # history before this is gone (404)
    messages: dict[str, StoredMessage] = field(default_factory=dict)
    history: list[dict] = field(default_factory=list)  # {"id", "messagesAdded": [...]}
    watch: dict | None = None


class GmailSandbox:
    """The mailboxes and the fault switches; thread-safe."""

    def __init__(self, state_file: Path | None = None):
        self._lock = threading.RLock()
        self.mailboxes: dict[str, Mailbox] = {}
        self.fail_status = 503
        self.fail_remaining = 0
        self.deliver_during_list = 0
        self.calls = 0
        self.push_endpoint: str | None = None
        self.silent = False
        self.state_file = state_file
        self._last_save = 0.0
        self._pending_save: threading.Timer | None = None
        self.load()

    # --- persistence (a development restart keeps the mailbox, like Gmail) ---------------
    def load(self) -> None:
        if self.state_file is None or not self.state_file.exists():
            return
        data = json.loads(self.state_file.read_text())
        for box in data["mailboxes"]:
            messages = {m["id"]: StoredMessage(**{**m, "raw": unb64url(m["raw"])}) for m in box["messages"]}
            self.mailboxes[box["address"].lower()] = Mailbox(
                box["address"], box["history_id"], box["oldest_history_id"], messages,
                box["history"], box["watch"])

    def save_soon(self) -> None:
        """Save now if the last save is older than SAVE_EVERY_S, else once that much later.
        The whole mailbox is rewritten each time, so saving per message would cost O(n) per
        message under traffic; a kill -9 loses at most SAVE_EVERY_S of a local mailbox."""
        if self.state_file is None:
            return
        with self._lock:
            if time.monotonic() - self._last_save >= SAVE_EVERY_S:
                self.save()
            elif self._pending_save is None:
                self._pending_save = threading.Timer(SAVE_EVERY_S, self._save_pending)
                self._pending_save.daemon = True
                self._pending_save.start()

    def _save_pending(self) -> None:
        with self._lock:
            self._pending_save = None
            self.save()

    def save(self) -> None:
        if self.state_file is None:
            return
        with self._lock:
            self._last_save = time.monotonic()
            data = {"mailboxes": [{
                "address": b.address, "history_id": b.history_id,
                "oldest_history_id": b.oldest_history_id, "history": b.history, "watch": b.watch,
                "messages": [{**m.__dict__, "raw": b64url(m.raw)} for m in b.messages.values()],
            } for b in self.mailboxes.values()]}
            self.state_file.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.state_file.with_suffix(".tmp")
            tmp.write_text(json.dumps(data))
            tmp.replace(self.state_file)  # atomic: a crash leaves the old file or the new one

    def push(self, box: Mailbox, history_id: int) -> None:
        """Pub/Sub's push of a watched mailbox's change (in a thread, like a subscription)."""
        if box.watch is None or not self.push_endpoint or self.silent:
            return
        data = json.dumps({"emailAddress": box.address, "historyId": history_id}).encode()
        envelope = {"message": {"data": base64.b64encode(data).decode(), "messageId": uuid.uuid4().hex,
                                "publishTime": datetime.now(UTC).isoformat()},
                    "subscription": "projects/sandbox/subscriptions/gmail-push"}
        endpoint = self.push_endpoint

        def post() -> None:
            import httpx

            try:
                httpx.post(endpoint, json=envelope, timeout=30)
            except httpx.HTTPError:
                pass  # Pub/Sub would retry; the ingress's fallback poll covers it here
        threading.Thread(target=post, daemon=True).start()

    def mailbox(self, address: str) -> Mailbox:
        key = address.lower()
        if key not in self.mailboxes:
            self.mailboxes[key] = Mailbox(address)
        return self.mailboxes[key]

    def maybe_fail(self) -> None:
        with self._lock:
            self.calls += 1
            if self.fail_remaining > 0:
                self.fail_remaining -= 1
                raise HTTPException(self.fail_status, "injected fault")

    def add(self, mailbox: Mailbox, raw: bytes, labels: list[str], thread_id: str | None = None) -> StoredMessage:
        parsed = message_from_bytes(raw, policy=policy.default)
        with self._lock:
            thread_id = thread_id or self._thread_for(mailbox, parsed)
            mailbox.history_id += 1
            stored = StoredMessage(
                id=uuid.uuid4().hex[:16], thread_id=thread_id, raw=raw, label_ids=labels,
                history_id=mailbox.history_id, internal_date_ms=int(time.time() * 1000),
                message_id_header=parsed.get("Message-ID"),
            )
            mailbox.messages[stored.id] = stored
            mailbox.history.append({"id": str(stored.history_id), "messages": [
                {"id": stored.id, "threadId": thread_id}],
                "messagesAdded": [{"message": {"id": stored.id, "threadId": thread_id,
                                               "labelIds": labels}}]})
            self.save_soon()
        if "INBOX" in labels:
            self.push(mailbox, stored.history_id)
        return stored

    @staticmethod
    def _thread_for(mailbox: Mailbox, parsed: Message) -> str:
        refs = " ".join(filter(None, [parsed.get("In-Reply-To"), parsed.get("References")])).split()
        for message in mailbox.messages.values():
            if message.message_id_header and message.message_id_header in refs:
                return message.thread_id
        return uuid.uuid4().hex[:16]


# --- Gmail resource rendering -----------------------------------------------------------
def _headers(part: Message) -> list[dict]:
    return [{"name": k, "value": str(v)} for k, v in part.items()]


def _payload(part: Message, part_id: str = "") -> dict:
    body: dict = {"size": 0}
    result = {"partId": part_id, "mimeType": part.get_content_type(),
              "filename": part.get_filename() or "", "headers": _headers(part), "body": body}
    if part.is_multipart():
        result["parts"] = [_payload(child, f"{part_id}.{i}" if part_id else str(i))
                           for i, child in enumerate(part.get_payload())]
    else:
        data = part.get_payload(decode=True) or b""
        body.update(size=len(data), data=b64url(data))
    return result


def render(message: StoredMessage, fmt: str) -> dict:
    parsed = message_from_bytes(message.raw, policy=policy.compat32)
    resource = {"id": message.id, "threadId": message.thread_id, "labelIds": message.label_ids,
                "historyId": str(message.history_id), "internalDate": str(message.internal_date_ms),
                "sizeEstimate": len(message.raw), "snippet": ""}
    if fmt == "raw":
        resource["raw"] = b64url(message.raw)
    elif fmt == "minimal":
        pass
    elif fmt == "metadata":
        resource["payload"] = {"mimeType": parsed.get_content_type(), "headers": _headers(parsed)}
    else:
        resource["payload"] = _payload(parsed)
    return resource


def decode_sent(message: StoredMessage) -> dict:
    parsed = message_from_bytes(message.raw, policy=policy.default)
    text = html = None
    for part in parsed.walk():
        if part.get_content_type() == "text/plain" and text is None:
            text = part.get_content()
        elif part.get_content_type() == "text/html" and html is None:
            html = part.get_content()
    return {"id": message.id, "threadId": message.thread_id, "to": parsed.get("To"),
            "from": parsed.get("From"), "subject": parsed.get("Subject"),
            "in_reply_to": parsed.get("In-Reply-To"), "references": parsed.get("References"),
            "message_id": parsed.get("Message-ID"), "text": text, "html": html,
            "sent_at": datetime.fromtimestamp(message.internal_date_ms / 1000, UTC).isoformat()}


router = APIRouter()


def _sandbox(request: Request) -> GmailSandbox:
    return request.app.state.gmail_sandbox


def _user(request: Request, user_id: str) -> Mailbox:
    sandbox = _sandbox(request)
    sandbox.maybe_fail()
    address = request.app.state.gmail_default_mailbox if user_id == "me" else user_id
    return sandbox.mailbox(address)


# --- discovery ----------------------------------------------------------------------------
@router.get("/discovery/gmail/v1/rest", include_in_schema=False)
@router.get("/discovery/v1/apis/gmail/v1/rest", include_in_schema=False)
def discovery_document(request: Request) -> JSONResponse:
    """Google's gmail v1 discovery document, pointed at this server."""
    doc = json.loads(DISCOVERY_SOURCE.read_text())
    root = str(request.base_url)
    doc.update(rootUrl=root, baseUrl=root, mtlsRootUrl=root)
    return JSONResponse(doc)


# --- users ----------------------------------------------------------------------------------
@router.get("/gmail/v1/users/{user_id}/profile", tags=["gmail"])
def get_profile(user_id: str, request: Request) -> dict:
    box = _user(request, user_id)
    return {"emailAddress": box.address, "messagesTotal": len(box.messages),
            "threadsTotal": len({m.thread_id for m in box.messages.values()}),
            "historyId": str(box.history_id)}


@router.post("/gmail/v1/users/{user_id}/watch", tags=["gmail"])
def watch(user_id: str, request: Request, body: Annotated[dict, Body()]) -> dict:
    box = _user(request, user_id)
    if not body.get("topicName"):
        raise HTTPException(400, "topicName required")
    expiration = str(int((time.time() + 7 * 86400) * 1000))
    box.watch = {**body, "expiration": expiration}
    _sandbox(request).save()
    return {"historyId": str(box.history_id), "expiration": expiration}


@router.post("/gmail/v1/users/{user_id}/stop", status_code=204, tags=["gmail"])
def stop(user_id: str, request: Request) -> None:
    _user(request, user_id).watch = None
    _sandbox(request).save()


@router.get("/gmail/v1/users/{user_id}/history", tags=["gmail"])
def list_history(user_id: str, request: Request, startHistoryId: int,
                 maxResults: int = Query(100, ge=1, le=500), pageToken: str | None = None,
                 labelId: str | None = None,
                 historyTypes: Annotated[list[str] | None, Query()] = None) -> dict:
    box = _user(request, user_id)
    if startHistoryId < box.oldest_history_id:
        raise HTTPException(404, "Requested entity was not found.")
    records = [copy.deepcopy(h) for h in box.history if int(h["id"]) > startHistoryId]
    if labelId:
        records = [h for h in records
                   if any(labelId in a["message"]["labelIds"] for a in h["messagesAdded"])]
    start = int(pageToken or 0)
    page = records[start:start + maxResults]
    result: dict = {"historyId": str(box.history_id)}
    if page:
        result["history"] = page
    if start + maxResults < len(records):
        result["nextPageToken"] = str(start + maxResults)
    return result


@router.get("/gmail/v1/users/{user_id}/messages", tags=["gmail"])
def list_messages(user_id: str, request: Request, maxResults: int = Query(100, ge=1, le=500),
                  labelIds: Annotated[list[str] | None, Query()] = None, pageToken: str | None = None,
                  q: str | None = None) -> dict:
    box = _user(request, user_id)
    sandbox = _sandbox(request)
    with sandbox._lock:
        arrive = sandbox.deliver_during_list > 0
        sandbox.deliver_during_list -= 1 if arrive else 0
    found = sorted(box.messages.values(), key=lambda m: m.history_id, reverse=True)
    if arrive:  # after the listing was taken, before the answer: not in this page
        late = Delivery(**{"from": "late.customer@example.com", "subject": "Arrived during the resync",
                           "text": "This mail arrived while the mailbox was being listed."})
        sandbox.add(box, build_raw(late, box.address), late.labelIds)
    for label in labelIds or []:
        found = [m for m in found if label in m.label_ids]
    for term in (q or "").split():
        # Gmail search: only `rfc822msgid:` is understood here; other terms match everything.
        if term.lower().startswith("rfc822msgid:"):
            wanted = term.split(":", 1)[1].strip("<>")
            found = [m for m in found if (m.message_id_header or "").strip("<>") == wanted]
    start = int(pageToken or 0)
    page = found[start:start + maxResults]
    result: dict = {"resultSizeEstimate": len(found)}
    if page:
        result["messages"] = [{"id": m.id, "threadId": m.thread_id} for m in page]
    if start + maxResults < len(found):
        result["nextPageToken"] = str(start + maxResults)
    return result


@router.get("/gmail/v1/users/{user_id}/messages/{message_id}", tags=["gmail"])
def get_message(user_id: str, message_id: str, request: Request,
                format: str = Query("full", pattern="^(full|raw|minimal|metadata)$")) -> dict:
    box = _user(request, user_id)
    message = box.messages.get(message_id)
    if message is None:
        raise HTTPException(404, "Requested entity was not found.")
    return render(message, format)


class SendBody(BaseModel):
    raw: str = Field(min_length=1)
    threadId: str | None = None


@router.post("/gmail/v1/users/{user_id}/messages/send", tags=["gmail"])
def send_message(user_id: str, body: SendBody, request: Request) -> dict:
    box = _user(request, user_id)
    try:
        raw = unb64url(body.raw)
    except ValueError as exc:
        raise HTTPException(400, "Invalid raw: not base64url") from exc
    parsed = message_from_bytes(raw, policy=policy.default)
    if not parseaddr(parsed.get("To") or "")[1]:
        raise HTTPException(400, "Invalid To header")
    stored = _sandbox(request).add(box, raw, ["SENT"], thread_id=body.threadId)
    return {"id": stored.id, "threadId": stored.thread_id, "labelIds": stored.label_ids}


# --- sandbox helpers --------------------------------------------------------------------------
class Delivery(BaseModel):
    mailbox: str | None = None
    raw: str | None = None  # base64url RFC 822
    sender: str | None = Field(None, alias="from")
    to: str | None = None
    subject: str | None = None
    text: str | None = None
    html: str | None = None
    in_reply_to: str | None = None
    labelIds: list[str] = Field(default_factory=lambda: ["INBOX", "UNREAD"])
    dmarc: Literal["pass", "fail", "none"] = "pass"  # what Gmail's Authentication-Results says


def authentication_results(raw: bytes, dmarc: str) -> bytes:
    """The header Gmail's receiving servers put on top of every inbound mail."""
    domain = parseaddr(message_from_bytes(raw, policy=policy.compat32).get("From") or "")[1] \
        .rpartition("@")[2] or "unknown.invalid"
    dkim = "pass" if dmarc == "pass" else "none"
    eol = "\r\n" if b"\r\n" in raw[:4096] else "\n"
    return (f"Authentication-Results: mx.google.com;{eol}       dkim={dkim} header.i=@{domain};"
            f"{eol}       spf={dkim} smtp.mailfrom={domain};{eol}       dmarc={dmarc} "
            f"(p=NONE sp=NONE dis=NONE) header.from={domain}{eol}").encode()


def build_raw(d: Delivery, mailbox: str) -> bytes:
    if not d.sender or not (d.text or d.html):
        raise HTTPException(422, "give raw, or from and text/html")
    msg = EmailMessage()
    msg["From"] = d.sender
    msg["To"] = d.to or mailbox
    msg["Subject"] = d.subject or ""
    msg["Date"] = format_datetime(datetime.now(UTC))
    msg["Message-ID"] = make_msgid(domain=parseaddr(d.sender)[1].split("@")[-1] or "example.com")
    if d.in_reply_to:
        msg["In-Reply-To"] = d.in_reply_to
        msg["References"] = d.in_reply_to
    if d.text:
        msg.set_content(d.text)
    if d.html:
        if d.text:
            msg.add_alternative(d.html, subtype="html")
        else:
            msg.set_content(d.html, subtype="html")
    return msg.as_bytes()


@router.post("/_sandbox/gmail/deliver", tags=["sandbox"])
def deliver(d: Delivery, request: Request) -> dict:
    """An inbound mail arrives in the mailbox; returns the historyId to push."""
    address = d.mailbox or request.app.state.gmail_default_mailbox
    sandbox = _sandbox(request)
    box = sandbox.mailbox(address)
    raw = unb64url(d.raw) if d.raw else build_raw(d, box.address)
    raw = authentication_results(raw, d.dmarc) + raw
    stored = sandbox.add(box, raw, d.labelIds)
    return {"id": stored.id, "threadId": stored.thread_id, "historyId": str(stored.history_id),
            "emailAddress": box.address}


@router.get("/_sandbox/gmail/watch", tags=["sandbox"])
def read_watch(request: Request, mailbox: str | None = None) -> dict:
    box = _sandbox(request).mailbox(mailbox or request.app.state.gmail_default_mailbox)
    return {"watch": box.watch, "historyId": str(box.history_id)}


class PubSub(BaseModel):
    push_endpoint: str | None = None
    silent: bool = False


@router.post("/_sandbox/gmail/pubsub", tags=["sandbox"])
def set_pubsub(config: PubSub, request: Request) -> dict:
    sandbox = _sandbox(request)
    sandbox.push_endpoint, sandbox.silent = config.push_endpoint, config.silent
    return config.model_dump()


@router.get("/_sandbox/gmail/sent", tags=["sandbox"])
def list_sent(request: Request, mailbox: str | None = None) -> dict:
    box = _sandbox(request).mailbox(mailbox or request.app.state.gmail_default_mailbox)
    sent = [decode_sent(m) for m in sorted(box.messages.values(), key=lambda m: m.history_id)
            if "SENT" in m.label_ids]
    return {"data": sent, "count": len(sent)}


class Faults(BaseModel):
    status: int = Field(503, ge=400, le=599)
    count: int = Field(1, ge=0, le=100_000)
    deliver_during_list: int = Field(0, ge=0, le=100)


@router.post("/_sandbox/gmail/faults", tags=["sandbox"])
def set_faults(faults: Faults, request: Request) -> dict:
    sandbox = _sandbox(request)
    sandbox.fail_status, sandbox.fail_remaining = faults.status, faults.count
    sandbox.deliver_during_list = faults.deliver_during_list
    return {"status": sandbox.fail_status, "remaining": sandbox.fail_remaining,
            "deliver_during_list": sandbox.deliver_during_list}


@router.post("/_sandbox/gmail/expire-history", tags=["sandbox"])
def expire_history(request: Request, mailbox: str | None = None) -> dict:
    box = _sandbox(request).mailbox(mailbox or request.app.state.gmail_default_mailbox)
    box.oldest_history_id = box.history_id
    box.history.clear()
    _sandbox(request).save()
    return {"oldestHistoryId": str(box.oldest_history_id)}


@router.post("/_sandbox/gmail/reset", tags=["sandbox"])
def reset(request: Request) -> dict:
    sandbox = _sandbox(request)
    sandbox.mailboxes.clear()
    sandbox.fail_remaining = sandbox.deliver_during_list = 0
    sandbox.save()
    return {"ok": True}


def install(app, default_mailbox: str, state_dir: Path | None = None) -> None:
    app.state.gmail_sandbox = GmailSandbox(state_dir / "gmail-mailboxes.json" if state_dir else None)
    app.state.gmail_default_mailbox = default_mailbox
    app.include_router(router)
