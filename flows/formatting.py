"""Channel formatting of a reply text (agent answer, acknowledgement or human reply).

- email: greeting, the text, sign-off; at most 500 words; a plain-text part and an escaped
  HTML part; "Re:" subject; In-Reply-To/References so it lands in the customer's thread.
- whatsapp: plain text (no markdown), each message at most 300 characters; longer texts are
  split at sentence or word boundaries and numbered "(1/3)" as the continuation marker.
- web: at most 300 words, plain text (shown on the ticket status page).
When the previous contact was on another channel the reply acknowledges it
("I see you emailed us on 3 Mar 2026 about "Late parcel"").
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field
from typing import Any

from schema.events import ReplyKind

SHOP_NAME = "Northwind Goods"
EMAIL_MAX_WORDS = 500
WEB_MAX_WORDS = 300
WHATSAPP_MAX_CHARS = 300
WHATSAPP_MAX_PARTS = 6
ELLIPSIS = "…"

_CHANNEL_VERB = {
    "email": "emailed us",
    "whatsapp": "messaged us on WhatsApp",
    "web": "contacted us through our website",
}


@dataclass(frozen=True)
class FormattedReply:
    subject: str | None
    body: str
    parts: list[str] = field(default_factory=list)
    html: str | None = None
    headers: dict[str, str] = field(default_factory=dict)


def _value(x: Any) -> str:
    return getattr(x, "value", x)


def acknowledgement(channel: str, previous_contact) -> str | None:
    if previous_contact is None or _value(previous_contact.channel) == channel:
        return None
    verb = _CHANNEL_VERB.get(_value(previous_contact.channel), "contacted us")
    when = previous_contact.occurred_at
    about = " ".join((previous_contact.subject_or_summary or "").split())
    if len(about) > 80:
        about = about[:77].rstrip() + "..."
    text = f"I see you {verb} on {when.day} {when:%b %Y}"
    return f"{text} about \"{about}\"." if about else f"{text}."


def first_name(name: str | None) -> str | None:
    if not name:
        return None
    first = re.sub(r"[^\w'\-]", "", name.strip().split()[0]) if name.strip() else ""
    return first[:40] or None


def strip_markdown(text: str) -> str:
    text = re.sub(r"\*\*(.+?)\*\*|__(.+?)__", lambda m: m.group(1) or m.group(2), text)
    text = re.sub(r"^#{1,6}\s*", "", text, flags=re.MULTILINE)
    text = re.sub(r"\[([^\]]+)\]\((\S+?)\)", r"\1 (\2)", text)
    return text.replace("`", "")


def truncate_words(text: str, max_words: int) -> str:
    """At most max_words words, cut at a sentence end when one is near, else with an ellipsis."""
    words = text.split()
    if len(words) <= max_words:
        return text
    # keep line structure: walk the text and cut after the max_words-th word
    count, cut = 0, len(text)
    for m in re.finditer(r"\S+", text):
        count += 1
        if count == max_words:
            cut = m.end()
            break
    head = text[:cut]
    sentence_end = max(head.rfind(". "), head.rfind(".\n"), head.rfind("!"), head.rfind("?"))
    if sentence_end > len(head) * 0.6:
        return head[:sentence_end + 1]
    # drop one more word so the ellipsis does not make a word of its own over the limit
    return head.rsplit(None, 1)[0] + ELLIPSIS


def split_for_whatsapp(text: str, limit: int = WHATSAPP_MAX_CHARS,
                       max_parts: int = WHATSAPP_MAX_PARTS) -> list[str]:
    """Messages of at most `limit` characters including the " (i/n)" marker."""
    text = text.strip()
    if len(text) <= limit:
        return [text]
    budget = limit - len(f" ({max_parts}/{max_parts})")
    pieces: list[str] = []
    current = ""
    for unit in re.split(r"(?<=[.!?])\s+|\n+", text):
        unit = unit.strip()
        if not unit:
            continue
        while len(unit) > budget:  # a very long sentence: cut at a word boundary
            cut = unit.rfind(" ", 0, budget)
            cut = cut if cut > budget // 2 else budget
            if current:
                pieces.append(current)
                current = ""
            pieces.append(unit[:cut].strip())
            unit = unit[cut:].strip()
        if current and len(current) + 1 + len(unit) > budget:
            pieces.append(current)
            current = unit
        else:
            current = f"{current} {unit}".strip() if current else unit
    if current:
        pieces.append(current)
    if len(pieces) > max_parts:
        pieces = pieces[:max_parts]
        last = pieces[-1]
        pieces[-1] = (last[:budget - 1].rstrip() + ELLIPSIS) if len(last) >= budget else last + ELLIPSIS
    n = len(pieces)
    return [f"{p} ({i}/{n})" for i, p in enumerate(pieces, 1)] if n > 1 else pieces


def reply_subject(inbound_subject: str | None) -> str:
    subject = " ".join((inbound_subject or "").split())
    if not subject:
        return f"Re: Your message to {SHOP_NAME}"
    return subject if re.match(r"^re\s*:", subject, re.IGNORECASE) else f"Re: {subject}"


def threading_headers(metadata: dict[str, Any] | None) -> dict[str, str]:
    metadata = metadata or {}
    message_id = str(metadata.get("message_id_header") or "").strip()
    if not message_id:
        return {}
    references = " ".join(str(metadata.get("references") or "").split())
    refs = f"{references} {message_id}".strip() if message_id not in references else references
    return {"In-Reply-To": message_id, "References": refs}


def _sign_off(kind: ReplyKind | str | None) -> str:
    if _value(kind) == ReplyKind.HUMAN.value:
        return f"Kind regards,\nThe {SHOP_NAME} customer care team"
    return f"Best regards,\n{SHOP_NAME} Support"


def format_reply(channel: Any, text: str, *, customer_name: str | None = None,
                 inbound_subject: str | None = None,
                 inbound_metadata: dict[str, Any] | None = None, previous_contact=None,
                 kind: ReplyKind | str | None = ReplyKind.AGENT) -> FormattedReply:
    channel = _value(channel)
    text = strip_markdown((text or "").strip())
    ack = acknowledgement(channel, previous_contact)
    name = first_name(customer_name)
    if channel == "email":
        greeting = f"Hi {name}," if name else "Hello,"
        sign_off = _sign_off(kind)
        fixed = [greeting] + ([ack] if ack else []) + [sign_off]
        budget = EMAIL_MAX_WORDS - sum(len(x.split()) for x in fixed)
        paragraphs = [greeting] + ([ack] if ack else []) + [truncate_words(text, budget), sign_off]
        body = "\n\n".join(paragraphs)
        html_body = "".join(
            "<p>" + html.escape(p).replace("\n", "<br>\n") + "</p>\n" for p in paragraphs)
        return FormattedReply(reply_subject(inbound_subject), body, [body],
                              f"<html><body>\n{html_body}</body></html>",
                              threading_headers(inbound_metadata))
    if channel == "whatsapp":
        opening = f"Hi {name}! " if name else ""
        plain = re.sub(r"^\s*[-*]\s+", "• ", text, flags=re.MULTILINE)
        body = f"{opening}{ack + ' ' if ack else ''}{plain}".strip()
        parts = split_for_whatsapp(body)
        return FormattedReply(None, "\n".join(parts), parts, None, {})
    if channel == "web":
        opening = f"Hi {name}," if name else "Hello,"
        prefix = [opening] + ([ack] if ack else [])
        budget = WEB_MAX_WORDS - sum(len(x.split()) for x in prefix)
        body = "\n\n".join(prefix + [truncate_words(text, budget)])
        return FormattedReply(reply_subject(inbound_subject) if inbound_subject else None,
                              body, [body], None, {})
    raise ValueError(f"channel: unknown channel {channel!r}")


def violations(channel: Any, reply: FormattedReply) -> list[str]:
    """Channel limits a formatted reply breaks (used by `fte eval` and tests)."""
    channel = _value(channel)
    problems = []
    if channel == "email":
        if len(reply.body.split()) > EMAIL_MAX_WORDS:
            problems.append("email over 500 words")
        if not (reply.subject or "").startswith("Re:"):
            problems.append("email subject without Re:")
        if not reply.html:
            problems.append("email without html part")
    elif channel == "whatsapp":
        if any(len(p) > WHATSAPP_MAX_CHARS for p in reply.parts):
            problems.append("whatsapp part over 300 characters")
        if not reply.parts:
            problems.append("whatsapp without parts")
    elif channel == "web" and len(reply.body.split()) > WEB_MAX_WORDS:
        problems.append("web over 300 words")
    return problems
