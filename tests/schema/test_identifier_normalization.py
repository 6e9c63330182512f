import pytest

from schema.events import Identifier, IdentifierKind
from schema.identity import (
    InvalidIdentifier,
    identity_key,
    normalize,
    normalize_email,
    normalize_phone,
)


def test_email_is_lower_cased_and_gmail_not_folded_by_default():
    assert normalize_email("  Jane.Doe+shop@GMail.com ") == "jane.doe+shop@gmail.com"
    assert normalize_email("Jane.Doe+shop@GMail.com", fold_gmail=True) == "janedoe@gmail.com"


@pytest.mark.parametrize("raw", ["whatsapp:+1 (555) 010-0100", "+15550100100", "555-010-0100"])
def test_phone_becomes_e164(raw):
    assert normalize_phone(raw) == "+15550100100"


@pytest.mark.parametrize("raw", ["hello", "+1", "whatsapp:abc"])
def test_bad_phone_is_refused(raw):
    with pytest.raises(InvalidIdentifier):
        normalize_phone(raw)


def test_identity_key_uses_the_normalized_value():
    ident = normalize(Identifier(kind=IdentifierKind.EMAIL, value="A@X.com"))
    assert identity_key(ident) == "email:a@x.com"
