"""What is new in a mailbox since the stored historyId, read through the Gmail API.

`fetch_new_messages` is blocking (google-api-python-client); the caller runs it in a thread
under the mailbox's lock, publishes each message, and only then stores the new cursor.

Resync (the history id expired, the cursor was lost, or the mailbox is not the one the
cursor belongs to): the mailbox's historyId is read first, then messages.list is paged
newest first back to the first message already processed (`known`). Mail arriving during
the resync has a later historyId than the one stored, so the next history.list reads it.
Messages that cannot be parsed come back in `dead` (gmail id, reason), never dropped.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from googleapiclient.errors import HttpError

from fte.logs import get_logger
from ingress.email_parse import ParsedEmail, parse_gmail_message

log = get_logger(__name__)

RETRIES = 3  # per API call, on 429/5xx, with backoff (google-api-python-client's own)
PAGE = 100  # messages.list page size during a resync

Known = Callable[[list[str]], set[str]]


@dataclass(frozen=True)
class Fetched:
    messages: list[ParsedEmail]
    next_cursor: int
    resynced: bool
    skipped_own: int
    dead: list[tuple[str, str]] = field(default_factory=list)  # (gmail id, reason)
    truncated: bool = False


def mailbox_history_id(service) -> int:
    profile = service.users().getProfile(userId="me").execute(num_retries=RETRIES)
    return int(profile["historyId"])


def _history_message_ids(service, start_history_id: int) -> tuple[list[str], int]:
    """Ids of messages added since `start_history_id`, in order, and the newest historyId."""
    ids: list[str] = []
    newest = start_history_id
    page_token = None
    while True:
        response = service.users().history().list(
            userId="me", startHistoryId=str(start_history_id), historyTypes=["messageAdded"],
            pageToken=page_token, maxResults=500,
        ).execute(num_retries=RETRIES)
        newest = max(newest, int(response.get("historyId", newest)))
        for record in response.get("history", []):
            for added in record.get("messagesAdded", []):
                message_id = added["message"]["id"]
                if message_id not in ids:
                    ids.append(message_id)
        page_token = response.get("nextPageToken")
        if not page_token:
            return ids, newest


def _resync_message_ids(service, known: Known, limit: int) -> tuple[list[str], int, bool]:
    """Every inbox message newer than the last one processed, oldest first; the historyId
    read before listing; whether `limit` cut the list short."""
    newest = mailbox_history_id(service)  # first: later mail is read by history.list next time
    ids: list[str] = []
    page_token = None
    while len(ids) < limit:
        response = service.users().messages().list(
            userId="me", labelIds=["INBOX"], maxResults=PAGE, pageToken=page_token,
        ).execute(num_retries=RETRIES)
        page = [m["id"] for m in response.get("messages", [])]
        seen = known(page)
        for message_id in page:
            if message_id in seen:
                return list(reversed(ids)), newest, False  # reached what was processed before
            ids.append(message_id)
        page_token = response.get("nextPageToken")
        if not page_token:
            return list(reversed(ids)), newest, False
    return list(reversed(ids[:limit])), newest, True


def is_own_mail(parsed: ParsedEmail, mailbox: str) -> bool:
    """Our replies show up in the mailbox's history too; never feed them back in."""
    return "SENT" in parsed.label_ids or parsed.from_address.lower() == mailbox.lower()


def fetch_new_messages(service, *, mailbox: str, cursor: int | None, resync_limit: int,
                       known: Known = lambda ids: set(), force_resync: bool = False) -> Fetched:
    resynced = truncated = False
    if cursor is None or force_resync:
        ids, newest, truncated = _resync_message_ids(service, known, resync_limit)
        resynced = True
    else:
        try:
            ids, newest = _history_message_ids(service, cursor)
        except HttpError as exc:
            if exc.resp.status != 404:
                raise
            log.warning("gmail.history_expired", mailbox=mailbox, start_history_id=cursor)
            ids, newest, truncated = _resync_message_ids(service, known, resync_limit)
            resynced = True
    if truncated:
        log.warning("gmail.resync_truncated", mailbox=mailbox, limit=resync_limit)
    parsed: list[ParsedEmail] = []
    dead: list[tuple[str, str]] = []
    skipped = 0
    for message_id in ids:
        try:
            message = service.users().messages().get(
                userId="me", id=message_id, format="full").execute(num_retries=RETRIES)
        except HttpError as exc:
            if exc.resp.status == 404:  # deleted since the notification: nothing to read
                continue
            raise
        try:
            item = parse_gmail_message(message)
        except ValueError as exc:
            log.warning("gmail.unparseable", gmail_id=message_id, reason=str(exc))
            dead.append((message_id, f"unparseable: {exc}"))
            continue
        if is_own_mail(item, mailbox) or "DRAFT" in item.label_ids:
            skipped += 1
            continue
        parsed.append(item)
    return Fetched(parsed, newest, resynced, skipped, dead, truncated)
