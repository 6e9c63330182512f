"""Gmail API message resources -> the fields of an InboundMessage (pure functions).

Bodies arrive base64url-encoded inside a MIME tree. We prefer text/plain, fall back to
HTML converted to text, then strip what the customer did not write for this message:
quoted earlier mail and signatures.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass, field
from email.utils import getaddresses, parseaddr

from bs4 import BeautifulSoup

MAX_PARTS = 200  # a MIME tree deeper or wider than this is not a customer's message


@dataclass(frozen=True)
class ParsedEmail:
    gmail_id: str
    thread_id: str | None
    from_address: str
    from_name: str | None
    to: list[str]
    subject: str | None
    message_id_header: str | None
    references: str | None
    in_reply_to: str | None
    body: str
    label_ids: list[str] = field(default_factory=list)
    internal_date_ms: int | None = None


def _b64url(data: str) -> bytes:
    return base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))


def _charset(part: dict) -> str:
    for header in part.get("headers", []):
        if header.get("name", "").lower() == "content-type":
            match = re.search(r'charset="?([\w.-]+)"?', header.get("value", ""), re.IGNORECASE)
            if match:
                return match.group(1)
    return "utf-8"


def _decode(part: dict) -> str:
    data = (part.get("body") or {}).get("data")
    if not data:
        return ""
    raw = _b64url(data)
    try:
        return raw.decode(_charset(part), errors="replace")
    except LookupError:
        return raw.decode("utf-8", errors="replace")


def _walk(part: dict, out: list[dict]) -> None:
    if len(out) >= MAX_PARTS:
        return
    out.append(part)
    for child in part.get("parts") or []:
        _walk(child, out)


def _is_attachment(part: dict) -> bool:
    if part.get("filename"):
        return True
    return any(h.get("name", "").lower() == "content-disposition"
               and h.get("value", "").lower().startswith("attachment")
               for h in part.get("headers", []))


def html_to_text(html: str) -> str:
    soup = BeautifulSoup(html, "html.parser")
    for tag in soup(["script", "style", "head", "title"]):
        tag.decompose()
    # Quoted mail in HTML replies (Gmail, Outlook, Apple Mail) is marked up; drop it here.
    for tag in soup.select("blockquote, .gmail_quote, #appendonsend, #divRplyFwdMsg"):
        tag.decompose()
    for br in soup.find_all("br"):
        br.replace_with("\n")
    for block in soup.find_all(["p", "h1", "h2", "h3", "h4"]):
        block.insert_after("\n\n")
    for block in soup.find_all(["div", "li", "tr"]):
        block.insert_after("\n")
    return soup.get_text()


def body_text(payload: dict) -> str:
    """The message's text: text/plain if any, else HTML converted to text."""
    parts: list[dict] = []
    _walk(payload, parts)
    plain = [p for p in parts if p.get("mimeType") == "text/plain" and not _is_attachment(p)]
    if plain:
        return "\n".join(_decode(p) for p in plain)
    html = [p for p in parts if p.get("mimeType") == "text/html" and not _is_attachment(p)]
    if html:
        return "\n".join(html_to_text(_decode(p)) for p in html)
    return ""


# Lines that start the quoted earlier message; everything from there on is dropped.
_QUOTE_HEADERS = [
    re.compile(r"^\s*On\s.{0,200}\swrote:\s*$", re.IGNORECASE),
    re.compile(r"^\s*Am\s.{0,200}\sschrieb.{0,80}:\s*$", re.IGNORECASE),
    re.compile(r"^\s*Le\s.{0,200}\sa écrit\s*:\s*$", re.IGNORECASE),
    re.compile(r"^\s*-{2,}\s*Original Message\s*-{2,}\s*$", re.IGNORECASE),
    re.compile(r"^\s*-{2,}\s*Forwarded message\s*-{2,}\s*$", re.IGNORECASE),
    re.compile(r"^\s*_{10,}\s*$"),  # Outlook's rule above "From: ... Sent: ..."
    re.compile(r"^\s*From:\s.+$", re.IGNORECASE),  # only when followed by Sent:/Date: (checked below)
]
# Signature starts: the RFC 3676 delimiter and the usual phone sign-offs.
_SIGNATURES = [
    re.compile(r"^-- ?$"),
    re.compile(r"^\s*Sent from my \w+", re.IGNORECASE),
    re.compile(r"^\s*Get Outlook for ", re.IGNORECASE),
]


def strip_quotes_and_signature(text: str) -> str:
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    kept: list[str] = []
    for i, line in enumerate(lines):
        if any(p.match(line) for p in _SIGNATURES):
            break
        header_hit = next((p for p in _QUOTE_HEADERS if p.match(line)), None)
        if header_hit is not None:
            if header_hit is not _QUOTE_HEADERS[-1]:
                break
            following = " ".join(lines[i + 1:i + 4]).lower()
            if "sent:" in following or "date:" in following:
                break
        if line.lstrip().startswith(">"):
            continue
        kept.append(line.rstrip())
    cleaned = "\n".join(kept)
    cleaned = re.sub(r"[ \t\u00a0]+", " ", cleaned)
    cleaned = re.sub(r"\n\s*\n\s*\n+", "\n\n", cleaned)
    return cleaned.strip()


def header(headers: list[dict], name: str) -> str | None:
    wanted = name.lower()
    for h in headers:
        if h.get("name", "").lower() == wanted:
            return h.get("value")
    return None


def parse_gmail_message(message: dict) -> ParsedEmail:
    """Fields of a users.messages.get(format='full') resource; ValueError if no sender."""
    payload = message.get("payload") or {}
    headers = payload.get("headers") or []
    from_name, from_address = parseaddr(header(headers, "From") or "")
    if "@" not in from_address:
        raise ValueError("From: no sender address")
    to = [addr for _, addr in getaddresses([header(headers, "To") or ""]) if addr]
    internal = message.get("internalDate")
    return ParsedEmail(
        gmail_id=message["id"],
        thread_id=message.get("threadId"),
        from_address=from_address,
        from_name=from_name or None,
        to=to,
        subject=header(headers, "Subject"),
        message_id_header=header(headers, "Message-ID") or header(headers, "Message-Id"),
        references=header(headers, "References"),
        in_reply_to=header(headers, "In-Reply-To"),
        body=strip_quotes_and_signature(body_text(payload)),
        label_ids=list(message.get("labelIds") or []),
        internal_date_ms=int(internal) if internal else None,
    )
