"""Which identifiers of a message may link or merge customers: pure rules, no database.

An identifier links (is looked up in, and written to, `customer_identifiers`; two owners
are merged) only when the channel proved it (`Identifier.verified`: a Twilio-signed
WhatsApp sender, a DMARC-aligned Gmail From, a web-form email or phone confirmed by a
one-time code or link). Anything else is a contact detail of that message's ticket: it
never reaches another customer's record, and a message with nothing proved gets a
customer of its own. `sinks/identity.py` applies the decision in Postgres.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from schema.events import Identifier


@dataclass(frozen=True)
class LinkDecision:
    link: tuple[Identifier, ...]      # proved: find their owners, merge them, link to the customer
    contacts: tuple[Identifier, ...]  # unproved: details of this message's ticket only

    @property
    def new_customer(self) -> bool:
        """Nothing proved: the message may not reach any existing customer."""
        return not self.link


def decide_links(identifiers: Sequence[Identifier]) -> LinkDecision:
    link, contacts = [], []
    for ident in identifiers:
        target = link if ident.verified else contacts
        if all((i.kind, i.value) != (ident.kind, ident.value) for i in target):
            target.append(ident)
    return LinkDecision(tuple(link), tuple(contacts))


def survivor_and_merged(owners: Iterable[int]) -> tuple[int | None, list[int]]:
    """The oldest owner survives (ids are assigned in creation order); the rest merge into it."""
    ordered = sorted(set(owners))
    return (ordered[0], ordered[1:]) if ordered else (None, [])


def cacheable(identifiers: Sequence[Identifier]) -> bool:
    """The flow may serve a message from its per-identifier customer cache only when its
    single identifier is proved; anything else goes to Postgres (and is never cached)."""
    return len(identifiers) == 1 and identifiers[0].verified
