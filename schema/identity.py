"""Normalising customer identifiers, shared by the ingress (Kafka keys) and the flow.

Emails: trimmed and lower-cased; Gmail dot/plus folding only when asked. Phones: E.164 via
the `phonenumbers` library (a `whatsapp:` prefix is dropped).
"""

from __future__ import annotations

import phonenumbers

from schema.events import Identifier, IdentifierKind

_GMAIL_DOMAINS = {"gmail.com", "googlemail.com"}


class InvalidIdentifier(ValueError):
    pass


def normalize_email(value: str, *, fold_gmail: bool = False) -> str:
    email = value.strip().lower()
    local, sep, domain = email.rpartition("@")
    if not sep or not local or "." not in domain:
        raise InvalidIdentifier(f"not an email address: {value!r}")
    if fold_gmail and domain in _GMAIL_DOMAINS:
        local = local.split("+", 1)[0].replace(".", "")
        domain = "gmail.com"
    return f"{local}@{domain}"


def normalize_phone(value: str, *, default_region: str = "US") -> str:
    raw = value.strip()
    if raw.lower().startswith("whatsapp:"):
        raw = raw[len("whatsapp:"):]
    try:
        number = phonenumbers.parse(raw, None if raw.startswith("+") else default_region)
    except phonenumbers.NumberParseException as exc:
        raise InvalidIdentifier(f"not a phone number: {value!r}") from exc
    if not phonenumbers.is_possible_number(number):
        raise InvalidIdentifier(f"not a possible phone number: {value!r}")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def normalize(identifier: Identifier, *, fold_gmail: bool = False, default_region: str = "US") -> Identifier:
    if identifier.kind is IdentifierKind.EMAIL:
        value = normalize_email(identifier.value, fold_gmail=fold_gmail)
    else:
        value = normalize_phone(identifier.value, default_region=default_region)
    return Identifier(kind=identifier.kind, value=value, verified=identifier.verified)


def identity_key(identifier: Identifier) -> str:
    """`email:jane@example.com` / `phone:+15550100100`: the Kafka key and state key."""
    return f"{identifier.kind.value}:{identifier.value}"
