"""Proving a web-form email or phone: one-time codes (and, for email, a link) tied to a ticket.

`start` stores a random code (and link token) as hashes only, and queues the message that
carries them in the reply outbox, so the dispatcher delivers it with its retries and
circuit breaker: the email through Gmail, the phone's code through WhatsApp. Nothing of it
is written to `messages`, so neither the ticket page nor the agent's history ever shows a
code. `confirm_code` / `confirm_link` check it (expiring, attempt-limited, single use) and
then link the identifier to the ticket's customer as verified (`sinks.identity.link_verified`,
which merges with its owner if it has one), all in one transaction.

What is verified is always the ticket's own contact detail (as submitted with the form),
never a value sent along with the request.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import timedelta

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from schema.events import Identifier, IdentifierKind
from schema.identity import InvalidIdentifier, normalize_email, normalize_phone
from sinks.identity import link_verified
from sinks.outbox import INSERT_OUTBOX, NOTIFY_CHANNEL

CODE_DIGITS = 6
TTL = timedelta(minutes=15)
MAX_ATTEMPTS = 5
MAX_STARTS_PER_HOUR = 3  # per ticket and kind: a form cannot be used to spam an address
# scrypt: a leaked table's 6-digit codes take hours to brute-force, far beyond their 15 minutes.
_SCRYPT = {"n": 2 ** 14, "r": 8, "p": 1, "dklen": 32}


class VerificationError(Exception):
    """Refused; `status` is the HTTP status the route answers with."""

    def __init__(self, status: int, detail: str):
        super().__init__(detail)
        self.status = status
        self.detail = detail


@dataclass(frozen=True)
class Started:
    verification_id: int
    sent_to: str  # masked
    expires_in_s: int


@dataclass(frozen=True)
class Confirmed:
    kind: str
    customer_id: int
    merged: bool


def hash_code(salt: bytes, code: str) -> bytes:
    return hashlib.scrypt(code.encode(), salt=salt, **_SCRYPT)


def hash_token(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()  # 256 random bits: no salt needed


def new_code() -> str:
    return f"{secrets.randbelow(10 ** CODE_DIGITS):0{CODE_DIGITS}d}"


def mask(kind: str, value: str) -> str:
    if kind == "email":
        local, _, domain = value.partition("@")
        return f"{local[:1]}***@{domain}"
    return f"{value[:3]}***{value[-2:]}"


def _contact(ticket: dict, kind: str) -> str:
    raw = ticket["contact_email"] if kind == "email" else ticket["contact_phone"]
    if not raw:
        raise VerificationError(422, f"kind: this ticket has no {kind}")
    try:
        return normalize_email(raw) if kind == "email" else normalize_phone(raw)
    except InvalidIdentifier as exc:
        raise VerificationError(422, f"kind: {exc}") from exc


def _one(conn: psycopg.Connection, query: str, params=()) -> dict | None:
    # sinks.identity works with tuple rows on the same connection; rows here as dicts.
    return conn.cursor(row_factory=dict_row).execute(query, params).fetchone()


def _ticket(conn: psycopg.Connection, ticket_id: str) -> dict:
    ticket = _one(conn, "SELECT id, channel, customer_id, contact_email, contact_phone FROM tickets "
                          "WHERE id = %s FOR UPDATE", (ticket_id,))
    if ticket is None or ticket["channel"] != "web":
        raise VerificationError(404, "ticket not found")
    return ticket


def start(database_url: str, *, ticket_id: str, kind: str, public_base_url: str) -> Started:
    if kind not in ("email", "phone"):
        raise VerificationError(422, "kind: email or phone")
    with psycopg.connect(database_url) as conn, conn.transaction():
        ticket = _ticket(conn, ticket_id)
        if ticket["customer_id"] is None:
            raise VerificationError(409, "the ticket is still being processed; try again in a few seconds")
        value = _contact(ticket, kind)
        recent = _one(conn, "SELECT count(*) AS n FROM identifier_verifications WHERE ticket_id = %s "
                              "AND kind = %s AND created_at > now() - interval '1 hour'",
                      (ticket_id, kind))["n"]
        if recent >= MAX_STARTS_PER_HOUR:
            raise VerificationError(429, "too many codes requested for this ticket; try again later")
        code, salt = new_code(), secrets.token_bytes(16)
        token = secrets.token_urlsafe(32) if kind == "email" else None
        row = _one(
            conn, "INSERT INTO identifier_verifications (ticket_id, kind, value, code_salt, code_hash, "
            "token_hash, expires_at) VALUES (%s, %s, %s, %s, %s, %s, now() + %s) RETURNING id",
            (ticket_id, kind, value, salt, hash_code(salt, code),
             hash_token(token) if token else None, TTL))
        minutes = int(TTL.total_seconds() // 60)
        if kind == "email":
            link = f"{public_base_url.rstrip('/')}/support/verify/{token}"
            body = (f"To confirm this email address for your support request {ticket_id}, open\n\n"
                    f"{link}\n\nor enter the code {code} on the support page. It expires in {minutes} "
                    "minutes. If you did not ask for this, ignore this message.")
            channel, recipient, subject = "email", value, "Confirm your email address"
        else:
            body = (f"Your confirmation code for support request {ticket_id} is {code}. It expires "
                    f"in {minutes} minutes. If you did not ask for this, ignore this message.")
            channel, recipient, subject = "whatsapp", f"whatsapp:{value}", None
        conn.execute(INSERT_OUTBOX, {
            "inbound_key": f"verify:{row['id']}", "kind": "verification", "channel": channel,
            "customer_id": ticket["customer_id"], "conversation_id": None, "ticket_id": None,
            "escalation_id": None, "recipient": recipient, "subject": subject, "body": body,
            "payload": Jsonb({"parts": [body], "html": None,
                              "headers": {"Auto-Submitted": "auto-generated"}, "thread_id": None}),
            "created_at": _one(conn, "SELECT now() AS t")["t"]})
        conn.execute("SELECT pg_notify(%s, %s)", (NOTIFY_CHANNEL, channel))
    return Started(row["id"], mask(kind, value), int(TTL.total_seconds()))


def _confirm(conn: psycopg.Connection, v: dict, method: str) -> Confirmed:
    ticket = _ticket(conn, v["ticket_id"])
    if ticket["customer_id"] is None:  # cannot happen after start; kept for safety
        raise VerificationError(409, "the ticket is still being processed")
    ident = Identifier(kind=IdentifierKind(v["kind"]), value=v["value"], verified=True)
    customer_id, merged = link_verified(conn, ticket["customer_id"], ident, verified_by=method)
    conn.execute("UPDATE identifier_verifications SET confirmed_at = now(), linked_customer_id = %s "
                 "WHERE id = %s", (customer_id, v["id"]))
    if v["kind"] == "email":  # the ticket's answers may now go to that address too
        conn.execute("UPDATE tickets SET contact_email_verified = true "
                     "WHERE id = %s AND lower(contact_email) = lower(%s)", (v["ticket_id"], v["value"]))
    # The code is spent: keep no readable copy of it in the outbox once delivered.
    conn.execute("UPDATE reply_outbox SET body = '[verification message]', payload = payload || "
                 "'{\"parts\": [\"[verification message]\"]}' WHERE inbound_key = %s AND status = 'sent'",
                 (f"verify:{v['id']}",))
    return Confirmed(v["kind"], customer_id, merged)


def confirm_code(database_url: str, *, ticket_id: str, kind: str, code: str) -> Confirmed:
    if kind not in ("email", "phone"):
        raise VerificationError(422, "kind: email or phone")
    with psycopg.connect(database_url) as conn:
        with conn.transaction():
            v = _one(
                conn, "SELECT * FROM identifier_verifications WHERE ticket_id = %s AND kind = %s "
                "AND confirmed_at IS NULL AND expires_at > now() ORDER BY created_at DESC LIMIT 1 "
                "FOR UPDATE", (ticket_id, kind))
            if v is None:
                raise VerificationError(404, "no pending verification for this ticket; request a code")
            if v["attempts"] >= MAX_ATTEMPTS:
                raise VerificationError(429, "too many wrong codes; request a new one")
            conn.execute("UPDATE identifier_verifications SET attempts = attempts + 1 WHERE id = %s",
                         (v["id"],))
            ok = hmac.compare_digest(hash_code(bytes(v["code_salt"]), code.strip()), bytes(v["code_hash"]))
            if ok:
                return _confirm(conn, v, "web-code")
        # The failed attempt is counted (committed above) before answering.
        raise VerificationError(400, "code: wrong or expired code")


def confirm_link(database_url: str, *, token: str) -> Confirmed:
    with psycopg.connect(database_url) as conn, conn.transaction():
        v = _one(conn, "SELECT * FROM identifier_verifications WHERE token_hash = %s FOR UPDATE",
                 (hash_token(token),))
        if v is None or v["confirmed_at"] is not None:
            raise VerificationError(404, "this link is not valid (already used?)")
        if _one(conn, "SELECT %s::timestamptz <= now() AS expired", (v["expires_at"],))["expired"]:
            raise VerificationError(410, "this link has expired; request a new one on the support page")
        return _confirm(conn, v, "web-link")
