"""What is new in a mailbox since the stored historyId, read through the Gmail API.

`fetch_new_messages` is blocking (google-api-python-client); the route runs it in a thread
under the mailbox's lock, publishes each message, and only then stores the new cursor.
"""

from __future__ import annotations

from dataclasses import dataclass

from googleapiclient.errors import HttpError

from fte.logs import get_logger
from ingress.email_parse import ParsedEmail, parse_gmail_message

log = get_logger(__name__)

RETRIES = 3  # per API call, on 429/5xx, with backoff (google-api-python-client's own)


@dataclass(frozen=True)
class Fetched:
    messages: list[ParsedEmail]
    next_cursor: int
    resynced: bool
    skipped_own: int


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


def _recent_message_ids(service, limit: int) -> tuple[list[str], int]:
    """Resync after the history is gone: the latest inbox messages, oldest first."""
    response = service.users().messages().list(
        userId="me", labelIds=["INBOX"], maxResults=limit).execute(num_retries=RETRIES)
    ids = [m["id"] for m in response.get("messages", [])]
    profile = service.users().getProfile(userId="me").execute(num_retries=RETRIES)
    return list(reversed(ids)), int(profile["historyId"])


def is_own_mail(parsed: ParsedEmail, mailbox: str) -> bool:
    """Our replies show up in the mailbox's history too; never feed them back in."""
    return "SENT" in parsed.label_ids or parsed.from_address.lower() == mailbox.lower()


def fetch_new_messages(service, *, mailbox: str, cursor: int | None,
                       resync_limit: int) -> Fetched:
    resynced = False
    if cursor is None:
        ids, newest = _recent_message_ids(service, resync_limit)
        resynced = True
    else:
        try:
            ids, newest = _history_message_ids(service, cursor)
        except HttpError as exc:
            if exc.resp.status != 404:
                raise
            log.warning("gmail.history_expired", mailbox=mailbox, start_history_id=cursor)
            ids, newest = _recent_message_ids(service, resync_limit)
            resynced = True
    parsed: list[ParsedEmail] = []
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
            continue
        if is_own_mail(item, mailbox) or "DRAFT" in item.label_ids:
            skipped += 1
            continue
        parsed.append(item)
    return Fetched(parsed, newest, resynced, skipped)
