"""Gmail API message resources -> the fields of an InboundMessage (pure functions).

Bodies arrive base64url-encoded inside a MIME tree. We prefer text/plain, fall back to
HTML converted to text, then strip what the customer did not write for this message:
quoted earlier mail and signatures.

Who sent it is read strictly: exactly one From address, no second address in the display
name; the sender counts as verified only when Gmail's own Authentication-Results says DMARC
passed for the From domain. `screen` decides what intake does with a message: answer it,
skip it (spam, robots: never answered, so two auto-responders cannot loop) or refuse it
(a dead letter with the reason).
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass, field
from email.header import decode_header, make_header
from email.utils import getaddresses
from typing import Literal

from bs4 import BeautifulSoup

MAX_PARTS = 200  # a MIME tree deeper or wider than this is not a customer's message
# Gmail's receiving servers: only their Authentication-Results (the topmost) is believed.
TRUSTED_AUTHSERV_ID = "mx.google.com"
ROBOT_PRECEDENCE = {"bulk", "junk", "list", "auto_reply"}
ROBOT_LOCAL_PARTS = {"mailer-daemon", "postmaster"}


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
    from_problem: str | None = None  # set when From is not exactly one plain address
    robot: str | None = None  # why this is machine-sent mail (never answered)
    dmarc_aligned: bool = False  # Gmail saw DMARC pass for the From domain


@dataclass(frozen=True)
class Screening:
    action: Literal["accept", "skip", "reject"]
    reason: str | None = None


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


def all_headers(headers: list[dict], name: str) -> list[str]:
    wanted = name.lower()
    return [h.get("value") or "" for h in headers if h.get("name", "").lower() == wanted]


def _decoded(text: str) -> str:
    try:
        return str(make_header(decode_header(text)))
    except (ValueError, LookupError, UnicodeError):
        return text


def strict_from(values: list[str]) -> tuple[str | None, str]:
    """(display name, address) of the one From header; ValueError naming what is wrong.

    Refuses what a lenient parser reads as someone else: `victim@bank.com <attacker@evil.com>`
    (two addresses), a display name that is itself an address, several From headers.
    """
    if len(values) != 1:
        raise ValueError(f"From: {len(values)} From headers, expected exactly one")
    value = " ".join(values[0].split())  # unfold
    pairs = [(name, addr) for name, addr in getaddresses([value]) if name or addr]
    if len(pairs) != 1:
        raise ValueError(f"From: {len(pairs)} addresses, expected exactly one")
    name, address = pairs[0]
    name = _decoded(name).strip()
    if address.count("@") != 1 or any(c.isspace() for c in address) or address.startswith("@") \
            or address.endswith("@"):
        raise ValueError("From: no valid sender address")
    if "@" in name:
        raise ValueError("From: display name contains an address")
    return name or None, address


def robot_reason(headers: list[dict], from_address: str) -> str | None:
    """Why this mail was sent by a machine (RFC 3834 and common practice), else None."""
    auto = (header(headers, "Auto-Submitted") or "").split(";")[0].strip().lower()
    if auto and auto != "no":
        return f"Auto-Submitted: {auto}"
    precedence = (header(headers, "Precedence") or "").strip().lower()
    if precedence in ROBOT_PRECEDENCE:
        return f"Precedence: {precedence}"
    for name in ("X-Autoreply", "X-Autorespond"):
        if header(headers, name):
            return f"{name} present"
    if from_address.partition("@")[0].lower() in ROBOT_LOCAL_PARTS:
        return f"sender {from_address.partition('@')[0].lower()}"
    if (header(headers, "Return-Path") or "").strip() == "<>":
        return "bounce (empty Return-Path)"
    return None


_COMMENT = re.compile(r"\([^()]*\)")


def dmarc_aligned(headers: list[dict], from_address: str,
                  authserv_id: str = TRUSTED_AUTHSERV_ID) -> bool:
    """True when the topmost Authentication-Results is Gmail's and says dmarc=pass with
    header.from equal to the From domain. Lower ones may come from the sender: ignored."""
    results = all_headers(headers, "Authentication-Results")
    if not results:
        return False
    text = _COMMENT.sub(" ", " ".join(results[0].split()))
    pieces = [p.strip() for p in text.split(";")]
    if not pieces or pieces[0].split()[0:1] != [authserv_id]:
        return False
    domain = from_address.rpartition("@")[2].lower().rstrip(".")
    for resinfo in pieces[1:]:
        tokens = resinfo.split()
        if not tokens or tokens[0].lower() != "dmarc=pass":
            continue
        props = dict(t.split("=", 1) for t in tokens[1:] if "=" in t)
        if props.get("header.from", "").lower().rstrip(".") == domain:
            return True
    return False


def screen(parsed: ParsedEmail) -> Screening:
    """What intake does with a parsed message (pure)."""
    if "SPAM" in parsed.label_ids:
        return Screening("skip", "labelled spam by Gmail")
    if parsed.from_problem:
        return Screening("reject", parsed.from_problem)
    if parsed.robot:
        return Screening("skip", f"machine-sent mail ({parsed.robot}): not answered")
    return Screening("accept")


def parse_gmail_message(message: dict) -> ParsedEmail:
    """Fields of a users.messages.get(format='full') resource. A From that is not exactly
    one plain address sets `from_problem` (the message is refused, see `screen`)."""
    payload = message.get("payload") or {}
    headers = payload.get("headers") or []
    from_problem = None
    try:
        from_name, from_address = strict_from(all_headers(headers, "From"))
    except ValueError as exc:
        from_problem, from_name, from_address = str(exc), None, ""
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
        from_problem=from_problem,
        robot=None if from_problem else robot_reason(headers, from_address),
        dmarc_aligned=not from_problem and dmarc_aligned(headers, from_address),
    )
