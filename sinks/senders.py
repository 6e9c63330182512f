"""Channel senders used by the outbox dispatcher: Gmail, Twilio WhatsApp, web.

Each sender delivers one part of a reply (`send`) and can tell whether an earlier attempt
that may have reached the API actually did (`find_sent`), so an in-doubt row is reconciled
instead of re-sent. Errors are classified:
- `InvalidReplyError`: the request is wrong before it leaves (CR/LF in a header, a bad
  recipient): fail the row; the provider was not asked, so its circuit breaker is untouched.
- `PermanentSendError`: the provider refused it (4xx): fail the row.
- `MaybeSentError`: the request left and no answer says what happened (a timeout, a 5xx):
  the next attempt looks the part up at the provider before sending it again.
- anything else (connection refused, DNS): nothing left; retry later.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.utils import formatdate
from typing import Any

from fte.settings import Settings


class PermanentSendError(Exception):
    pass


class InvalidReplyError(PermanentSendError):
    """Raised before anything is sent: the reply itself cannot be sent as it is."""


class MaybeSentError(Exception):
    """The request reached (or may have reached) the provider; its outcome is unknown."""


WHATSAPP_ADDRESS = re.compile(r"^whatsapp:\+[1-9]\d{6,14}$")
EMAIL_ADDRESS = re.compile(r"^[^@\s<>,;]+@[^@\s<>,;]+\.[^@\s<>,;]+$")


def ticket_page_url(base_url: str, ticket_id: str) -> str:
    """Where a customer reads (and answers) their ticket: the support page opens the ticket
    named in its fragment (which browsers never send to the server, so it stays out of logs)."""
    return f"{base_url.rstrip('/')}/#{ticket_id}"


def _timed_out(exc: BaseException) -> bool:
    import requests

    return isinstance(exc, (TimeoutError, requests.exceptions.ReadTimeout))


def reply_message_id(inbound_key: str, part: int, domain: str) -> str:
    """Deterministic RFC 5322 Message-ID: the key to find an in-doubt email later."""
    digest = hashlib.sha256(inbound_key.encode()).hexdigest()[:32]
    return f"<reply-{digest}.{part}@{domain}>"


def _permanent(status: int | None) -> bool:
    return status is not None and 400 <= status < 500 and status not in (401, 403, 408, 409, 429)


class GmailSender:
    channel = "email"

    def __init__(self, settings: Settings):
        from fte.gmail import build_gmail_service

        self.settings = settings
        # One per dispatcher thread (httplib2); every call ends within the client timeout.
        self.service = build_gmail_service(settings, timeout=settings.DISPATCH_CLIENT_TIMEOUT_S)
        self.domain = settings.GMAIL_MAILBOX.rpartition("@")[2] or "localhost"

    def build(self, row: dict, part: int, text: str) -> EmailMessage:
        """The RFC 822 message; InvalidReplyError when it cannot be built as given."""
        if not EMAIL_ADDRESS.match(row["recipient"] or ""):
            raise InvalidReplyError(f"recipient: not an email address: {row['recipient']!r}")
        try:
            return self._build(row, part, text)
        except (ValueError, TypeError) as exc:  # e.g. CR/LF in a header value
            raise InvalidReplyError(f"email: {exc}") from exc

    def _build(self, row: dict, part: int, text: str) -> EmailMessage:
        payload = row["payload"] or {}
        msg = EmailMessage()
        msg["From"] = self.settings.GMAIL_MAILBOX
        msg["To"] = row["recipient"]
        msg["Subject"] = row["subject"] or "Re: your message"
        msg["Date"] = formatdate(localtime=False)
        msg["Message-ID"] = reply_message_id(row["inbound_key"], part, self.domain)
        msg["Auto-Submitted"] = "auto-replied"  # RFC 3834: other robots must not answer it
        for name, value in (payload.get("headers") or {}).items():
            if name.lower() in {"in-reply-to", "references"} and value:
                msg[name] = value
        msg.set_content(text)
        if payload.get("html"):
            msg.add_alternative(payload["html"], subtype="html")
        return msg

    def send(self, row: dict, part: int, text: str) -> str:
        from googleapiclient.errors import HttpError

        raw = base64.urlsafe_b64encode(self.build(row, part, text).as_bytes()).decode()
        body: dict[str, Any] = {"raw": raw}
        thread_id = (row["payload"] or {}).get("thread_id")
        if thread_id:
            body["threadId"] = thread_id
        try:
            result = self.service.users().messages().send(userId="me", body=body).execute(num_retries=0)
        except HttpError as exc:
            if _permanent(exc.resp.status):
                raise PermanentSendError(f"gmail {exc.resp.status}: {exc}") from exc
            if exc.resp.status >= 500:
                raise MaybeSentError(f"gmail {exc.resp.status} after the request left") from exc
            raise
        except OSError as exc:
            if _timed_out(exc):
                raise MaybeSentError(f"gmail: no answer within the client timeout ({exc})") from exc
            raise
        return result["id"]

    def find_sent(self, row: dict, part: int, text: str, exclude: set[str] = frozenset(),
                  max_scan: int = 2000) -> str | None:
        """The sent mail carrying this part's Message-ID. Gmail's `rfc822msgid:` search
        narrows it to one; the scan (newest first) stops at mail older than the attempt."""
        wanted = reply_message_id(row["inbound_key"], part, self.domain)
        start = row.get("prev_claimed_at") or row["created_at"]
        since_ms = (start - timedelta(seconds=2)).timestamp() * 1000
        users = self.service.users()
        page_token, scanned = None, 0
        while scanned < max_scan:
            found = users.messages().list(userId="me", labelIds=["SENT"], q=f"rfc822msgid:{wanted}",
                                          maxResults=100, pageToken=page_token).execute(num_retries=0)
            for ref in found.get("messages", []):
                meta = users.messages().get(userId="me", id=ref["id"], format="metadata",
                                            metadataHeaders=["Message-ID"]).execute(num_retries=0)
                headers = {h["name"].lower(): h["value"]
                           for h in meta.get("payload", {}).get("headers", [])}
                if headers.get("message-id") == wanted:
                    return ref["id"]
                if int(meta.get("internalDate") or 0) < since_ms:
                    return None
                scanned += 1
            page_token = found.get("nextPageToken")
            if not page_token:
                break
        return None


class TwilioSender:
    channel = "whatsapp"

    def __init__(self, settings: Settings):
        from fte.twilio import build_twilio_client

        self.client = build_twilio_client(settings, timeout=settings.DISPATCH_CLIENT_TIMEOUT_S)
        self.sender = settings.TWILIO_WHATSAPP_FROM
        self.template_sid = settings.TWILIO_TEMPLATE_CONTENT_SID
        self.status_callback = (f"{settings.PUBLIC_BASE_URL.rstrip('/')}/webhooks/whatsapp/status"
                                if settings.TWILIO_STATUS_CALLBACKS else None)

    @staticmethod
    def template_text(variables: dict[str, str]) -> str:
        """What identifies a template send in the provider's message list (its variables)."""
        return json.dumps(variables, sort_keys=True)

    def send(self, row: dict, part: int, text: str, *, template: dict[str, str] | None = None) -> str:
        """One part as a session message, or (outside the 24-hour window) the approved
        template with `template` as its variables."""
        import requests
        from twilio.base.exceptions import TwilioRestException

        if not WHATSAPP_ADDRESS.match(row["recipient"] or ""):
            raise InvalidReplyError(f"recipient: not a WhatsApp number: {row['recipient']!r}")
        kwargs: dict[str, Any] = {"to": row["recipient"], "from_": self.sender}
        if self.status_callback:
            kwargs["status_callback"] = self.status_callback
        if template is not None:
            kwargs.update(content_sid=self.template_sid, content_variables=self.template_text(template))
        else:
            kwargs["body"] = text
        try:
            return self.client.messages.create(**kwargs).sid
        except TwilioRestException as exc:
            if _permanent(exc.status):
                raise PermanentSendError(f"twilio {exc.status}: {exc.msg}") from exc
            if exc.status >= 500:
                raise MaybeSentError(f"twilio {exc.status} after the request left") from exc
            raise
        except requests.exceptions.ReadTimeout as exc:
            raise MaybeSentError(f"twilio: no answer within the client timeout ({exc})") from exc

    def find_sent(self, row: dict, part: int, text: str, exclude: set[str] = frozenset()) -> str | None:
        """A message to the recipient with this body, created during the in-doubt attempt,
        whose sid no outbox row has recorded. Twilio has no idempotency key; the attempt's
        time window plus the recorded sids tell identical replies to one customer apart."""
        start = row.get("prev_claimed_at") or row["created_at"]
        since: datetime = start - timedelta(seconds=2)  # date_created has 1 s resolution
        known = set(row["provider_message_ids"] or []) | set(exclude)
        oldest_first = reversed(list(self.client.messages.list(to=row["recipient"], from_=self.sender,
                                                               limit=200)))
        for m in oldest_first:
            created = m.date_created
            if m.body == text and m.sid not in known and (created is None or created >= since):
                return m.sid
        return None


class WebSender:
    """Web replies are read from Postgres by the status page: delivery is marking them."""

    channel = "web"

    def send(self, row: dict, part: int, text: str) -> str:
        return f"web:{row['id']}"

    def find_sent(self, row: dict, part: int, text: str, exclude: set[str] = frozenset()) -> str | None:
        return None
