"""Labelled examples for the routing model, from every source, with fixed held-out splits.

A label is one of:
- ``intent:<name>``  — a knowledge-base intent (the Bitext intents the demo articles carry);
- ``escalate:<reason>`` — a case for a person (refund, human_requested, complaint, legal, pricing);
- ``out_of_scope``   — nothing the shop answers (greetings, chatter, other businesses' topics).

Sources: the Bitext dev CSV, the HINT3 train CSVs (their labels mapped below by meaning; labels
that mix several of ours are left out), the examples written for this shop
(``flows/routing_examples.yaml``) and the leads' corrections stored by the console.

Held-out parts are decided by a hash of the text (Bitext: of the template group), never by
results: ``is_heldout`` is true for a fixed ~20% of Bitext groups and ~30% of HINT3 sentences.
Training never sees them; ``fte eval`` reports them separately.
"""

from __future__ import annotations

import csv
import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import yaml

OUT_OF_SCOPE = "out_of_scope"
ESCALATE = "escalate:"
INTENT = "intent:"

# Bitext intents a person handles (the demo articles for them are marked `escalate: true`).
BITEXT_ESCALATIONS = {"get_refund": "refund", "contact_human_agent": "human_requested",
                      "complaint": "complaint"}

# HINT3 labels -> ours, by what the label means for a shop like ours. None: mixed (several of
# our labels under one of theirs), left out of training and evaluation.
HINT3_MAP: dict[str, str | None] = {
    # curekart (health shop)
    "CHAT_WITH_AGENT": "escalate:human_requested", "CALL_CENTER": "intent:contact_customer_service",
    "ORDER_STATUS": "intent:track_order", "DELAY_IN_PARCEL": "intent:track_order",
    "CANCEL_ORDER": "intent:cancel_order", "MODIFY_ADDRESS": "intent:change_shipping_address",
    "MODES_OF_PAYMENTS": "intent:check_payment_methods", "SIGN_UP": "intent:create_account",
    "ORDER_TAKING": "intent:place_order", "INTERNATIONAL_SHIPPING": "intent:delivery_options",
    "CHECK_PINCODE": "intent:delivery_options",
    "REFUNDS_RETURNS_REPLACEMENTS": None, "PAYMENT_AND_BILL": None, "ORDER_QUERY": None,
    "RESUME_DELIVERY": None, "PORTAL_ISSUE": None,
    # sofmattress (mattress seller)
    "DELAY_IN_DELIVERY": "intent:track_order", "COD": "intent:check_payment_methods",
    "EMI": "intent:check_payment_methods", "OFFERS": "escalate:pricing",
    "RETURN_EXCHANGE": None, "LEAD_GEN": None,
    # powerplay11 (fantasy-sports app)
    "CHAT_WITH_AN_AGENT": "escalate:human_requested", "CONTACT_NUMBER": "intent:contact_customer_service",
    "CHANGE_MOBILE_NUMBER": "intent:edit_account", "REFUND_OF_ADDED_CASH": "escalate:refund",
    "DEDUCTED_AMOUNT_NOT_RECEIVED": "intent:payment_issue", "CRITICISM": "escalate:complaint",
    "FEEDBACK": "intent:review", "VERIFY_EMAIL": None, "CHANGE_PROFILE_TEAM_DETAILS": None,
    "ACCOUNT_RESET": None, "REFUND_OF_WRONG_AMOUNT": None, "ACCOUNT_BALANCE_DEDUCTED": None,
}
# Every other HINT3 label is about that business's own products or small talk: out of scope.

BITEXT_HELDOUT_PERCENT = 20
HINT3_HELDOUT_PERCENT = 30


@dataclass(frozen=True)
class Example:
    text: str
    label: str
    source: str   # bitext | hint3:<company> | written | lead
    group: str    # paraphrases of one template share a group (grouped CV keeps them together)
    heldout: bool = False


def _bucket(key: str) -> int:
    return int(hashlib.sha1(key.encode("utf-8")).hexdigest()[:8], 16) % 100


_NON_WORD = re.compile(r"[^a-z ]+")


def template_group(text: str, label: str, entity: str = "") -> str:
    """Bitext rows are generated from templates by swapping entities and wording: the label
    plus the first three words left after removing the entity and digits names the family."""
    t = text.lower()
    if entity:
        t = t.replace(entity.lower(), " ")
    words = _NON_WORD.sub(" ", t).split()
    return f"{label}|{' '.join(words[:3])}"


def bitext_examples(path: Path) -> Iterator[Example]:
    with open(path, newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            intent = row["intent"]
            label = (ESCALATE + BITEXT_ESCALATIONS[intent]) if intent in BITEXT_ESCALATIONS \
                else INTENT + intent
            group = template_group(row["instruction"], label, row.get("entity_value") or "")
            yield Example(row["instruction"], label, "bitext", group,
                          _bucket("bitext:" + group) < BITEXT_HELDOUT_PERCENT)


def hint3_examples(directory: Path) -> Iterator[Example]:
    for path in sorted(Path(directory).glob("*_train.csv")):
        company = path.name.split("_")[0]
        with open(path, newline="", encoding="utf-8") as fh:
            rows = csv.reader(fh)
            next(rows, None)
            for row in rows:
                if len(row) < 2 or not row[0].strip():
                    continue
                text, raw = row[0].strip(), row[1].strip()
                label = HINT3_MAP.get(raw, OUT_OF_SCOPE)
                if label is None:
                    continue
                yield Example(text, label, f"hint3:{company}", f"hint3|{text.lower()}",
                              _bucket("hint3:" + text) < HINT3_HELDOUT_PERCENT)


def written_examples(path: Path) -> Iterator[Example]:
    """`flows/routing_examples.yaml`: {label: [text, ...]} written for this shop."""
    doc = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    for label, texts in doc.items():
        validate_label(label)
        for i, text in enumerate(texts or []):
            yield Example(str(text), label, "written", f"written|{label}|{i}")


def validate_label(label: str) -> str:
    if label == OUT_OF_SCOPE or (label.startswith((INTENT, ESCALATE)) and len(label.split(":", 1)[1]) > 0):
        return label
    raise ValueError(f"label {label!r}: intent:<name>, escalate:<reason> or out_of_scope")


def lead_examples(rows: list[dict]) -> Iterator[Example]:
    """Leads' labels (console): rows of {id, text, label}."""
    for r in rows:
        yield Example(r["text"], validate_label(r["label"]), "lead", f"lead|{r['id']}")


def load_examples(data_dir: Path, written: Path, leads: list[dict] | None = None) -> list[Example]:
    """Every example (held-out ones flagged). Missing data files are skipped, not fatal:
    a deployment without ../shared/data trains on the written examples and leads' labels."""
    out: list[Example] = []
    bitext = Path(data_dir) / "bitext" / "bitext_dev.csv"
    if bitext.exists():
        out.extend(bitext_examples(bitext))
    hint3 = Path(data_dir) / "hint3"
    if hint3.is_dir():
        out.extend(hint3_examples(hint3))
    if Path(written).exists():
        out.extend(written_examples(written))
    out.extend(lead_examples(leads or []))
    return out


def data_hash(examples: list[Example]) -> str:
    h = hashlib.sha256()
    for e in examples:
        h.update(f"{e.label}\x1f{e.text}\x1f{e.source}\x1e".encode())
    return h.hexdigest()[:16]
