"""The linking rules (flows/linking.py): only verified identifiers link or merge."""

from __future__ import annotations

from flows.linking import cacheable, decide_links, survivor_and_merged
from schema.events import Identifier, IdentifierKind


def email(v, verified):
    return Identifier(kind=IdentifierKind.EMAIL, value=v, verified=verified)


def phone(v, verified):
    return Identifier(kind=IdentifierKind.PHONE, value=v, verified=verified)


def test_unverified_identifiers_are_contacts_and_the_message_gets_a_customer_of_its_own():
    d = decide_links([email("a@x.com", False), phone("+15550100100", False)])
    assert d.link == () and d.new_customer
    assert [i.value for i in d.contacts] == ["a@x.com", "+15550100100"]


def test_only_the_verified_identifier_of_a_mixed_message_links():
    d = decide_links([email("a@x.com", True), phone("+15550100100", False)])
    assert [i.value for i in d.link] == ["a@x.com"] and not d.new_customer
    assert [i.value for i in d.contacts] == ["+15550100100"]


def test_duplicates_are_decided_once():
    d = decide_links([email("a@x.com", True), email("a@x.com", True)])
    assert len(d.link) == 1


def test_the_oldest_owner_survives_a_merge():
    assert survivor_and_merged([7, 3, 9, 3]) == (3, [7, 9])
    assert survivor_and_merged([]) == (None, [])


def test_only_a_single_verified_identifier_is_served_from_the_cache():
    assert cacheable([phone("+15550100100", True)])
    assert not cacheable([phone("+15550100100", False)])
    assert not cacheable([email("a@x.com", True), phone("+15550100100", True)])
