"""Structured JSON logs with personal data redacted.

Every log line — ours, libraries' and uvicorn's own (server errors, tracebacks, access
lines) — passes through `redact_pii`, so an email address (also percent-encoded, as in a
query string), a phone number (E.164 or national format) or a ticket id that reaches a log
call in the message or any field is masked: `j***@example.com`, `+1******0100`,
`******0100`, `T-1A2B…`. Fields that carry message text (`body`, `text`, `html`, ...) are
replaced by their length. Access lines never carry a query string.
"""

from __future__ import annotations

import logging
import re
import sys
from typing import Any

import structlog

# "@" or its percent-encoding (query strings, form bodies).
_EMAIL = re.compile(r"(?<![\w.+-])([A-Za-z0-9._%+-])[A-Za-z0-9._%+-]*?(?:@|%40)"
                    r"([A-Za-z0-9.-]+\.[A-Za-z]{2,})", re.IGNORECASE)
# E.164-ish: optional "whatsapp:" prefix, +, 8-15 digits (spaces/dashes allowed between groups).
_PHONE = re.compile(r"(?<![\w])\+(\d)[\d\s().-]{6,18}(\d{4})(?!\d)")
# National format: "(415) 555-0100", "415-555-0100", "07700 900123", "020 7946 0958": digit
# groups with separators, 9 to 12 digits in all (dates and dotted IPs are left alone).
_NATIONAL = re.compile(r"(?<![\w+*.:-])(?:\(\d{2,5}\)\s?|\d{2,5}[\s.-])"
                       r"\d{2,4}(?:[\s.-]?\d{2,4}){1,2}(?![\w.:-]?\d)")
_IPV4 = re.compile(r"\d{1,3}(?:\.\d{1,3}){3}")
# Web ticket ids are the customer's key to the ticket: keep only a prefix.
_TICKET = re.compile(r"\bT-([0-9A-Fa-f]{4})[0-9A-Fa-f]{16,60}\b")
# Fields holding what customers (or we) wrote: only their length is logged.
BODY_FIELDS = {"body", "text", "html", "parts", "message_body", "raw"}


def redact_text(text: str) -> str:
    """Mask email addresses, phone numbers and ticket ids inside free text."""
    text = _EMAIL.sub(lambda m: f"{m.group(1)}***@{m.group(2)}", text)
    text = _PHONE.sub(_mask_phone, text)
    text = _NATIONAL.sub(_mask_national, text)
    return _TICKET.sub(lambda m: f"T-{m.group(1)}…", text)


def _mask_national(match: re.Match[str]) -> str:
    found = match.group(0)
    digits = re.sub(r"\D", "", found)
    if not 9 <= len(digits) <= 12 or _IPV4.fullmatch(found):
        return found
    return "*" * (len(digits) - 4) + digits[-4:]


def _mask_phone(match: re.Match[str]) -> str:
    digits = re.sub(r"\D", "", match.group(0))
    return "+" + digits[0] + "*" * (len(digits) - 5) + digits[-4:]


def redact_value(value: Any) -> Any:
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {k: _redact_field(k, v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(redact_value(v) for v in value)
    return value


def _redact_field(key: Any, value: Any) -> Any:
    if isinstance(key, str) and key.lower() in BODY_FIELDS and value is not None:
        return f"[{len(value) if isinstance(value, (str, bytes, list)) else '?'} redacted]"
    return redact_value(value)


def redact_pii(_logger: Any, _method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    return {k: _redact_field(k, v) for k, v in event_dict.items()}


class DropQueryString(logging.Filter):
    """uvicorn's access line: `client - "GET /path?query HTTP/1.1" 200`; the query string
    (where a lookup's email or a token would be) is cut before the line is formatted."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str):
            record.args = (*args[:2], args[2].split("?", 1)[0], *args[3:])
        return True


UVICORN_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi")


def configure_logging(level: str = "INFO") -> None:
    """JSON lines on stderr, for our code and for the stdlib loggers of libraries."""
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
    ]
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            redact_pii,
            structlog.processors.JSONRenderer(),
        ],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # uvicorn's loggers (and the tracebacks they log) go through the same redaction; run
    # uvicorn with log_config=None so it does not install its own handlers again.
    for name in UVICORN_LOGGERS:
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    access = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, DropQueryString) for f in access.filters):
        access.addFilter(DropQueryString())


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    return structlog.stdlib.get_logger(name)
