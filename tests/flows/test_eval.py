"""`fte eval` end to end: the console script against the real Postgres knowledge base."""

import csv
import json
import os
import subprocess
import sys

import pytest

ITEMS = [
    {"id": "1", "channel": "email", "subject": "Password", "text": "I forgot my password, how do I reset it?",
     "expect_escalate": False, "expect_intent": "recover_password"},
    {"id": "2", "channel": "whatsapp", "text": "I want to speak to a human right now",
     "expect_escalate": True, "expect_intent": "contact_human_agent"},
    {"id": "3", "channel": "web", "text": "Which payment methods do you accept?",
     "expect_escalate": False, "expect_intent": "check_payment_methods"},
    {"id": "4", "channel": "web", "text": "What is your refund policy?",
     "expect_escalate": False, "expect_intent": "check_refund_policy"},
    {"id": "5", "channel": "email", "text": "I need a refund for my broken kettle", "expect_escalate": True},
    {"id": "6", "channel": "whatsapp", "text": "how long does delivery take?", "expect_escalate": True},
]


@pytest.fixture(autouse=True)
def _model(routing_model):
    global DATA_DIR
    DATA_DIR = str(routing_model[1])


def fte(args, database_url):
    # FTE_DATA_DIR: where the session's routing model is installed
    env = {**os.environ, "DATABASE_URL": database_url, "OPENAI_API_KEY": "", "FTE_DATA_DIR": DATA_DIR}
    return subprocess.run([sys.executable, "-m", "fte.cli", "eval", *args], env=env,
                          capture_output=True, text=True, timeout=120, check=False)


def test_eval_jsonl_prints_the_summary_last_and_details_first(kb_database_url, tmp_path):
    path = tmp_path / "items.jsonl"
    path.write_text("\n".join(json.dumps(i) for i in ITEMS) + "\n")
    out = fte([str(path), "--details"], kb_database_url)
    assert out.returncode == 0, out.stderr
    lines = [json.loads(line) for line in out.stdout.strip().splitlines()]
    details, summary = lines[:-1], lines[-1]
    assert set(summary) == {"n", "escalation", "kb", "resolution", "out_of_scope", "format_violations"}
    assert set(summary["resolution"]) == {"answered_right", "answered_wrong", "asked"}
    assert summary["out_of_scope"] == {"n": 0, "answered": None}
    assert summary["n"] == 6 and len(details) == 6
    # item 6 is labelled wrongly on purpose: a question we answer counts as a missed escalation
    assert summary["escalation"]["precision"] == 1.0
    assert summary["escalation"]["recall"] == pytest.approx(2 / 3, abs=1e-3)
    assert summary["escalation"]["by_reason"] == {"human_requested": {"n": 1, "precision": 1.0},
                                                  "refund": {"n": 1, "precision": 1.0}}
    assert summary["kb"]["hit_at_1"] == 1.0 and summary["kb"]["hit_at_3"] == 1.0
    assert summary["format_violations"] == 0
    by_id = {d["id"]: d for d in details}
    assert by_id["2"]["reason"] == "human_requested" and by_id["1"]["kb"][0]["intents"] == ["recover_password"]


def test_eval_bitext_maps_intents_and_offensive_tag(kb_database_url, tmp_path):
    path = tmp_path / "bitext.csv"
    rows = [("how do I cancel my order", "cancel_order", "BL"),
            ("i want a refund of my money", "get_refund", "BL"),
            ("where is the fucking invoice", "get_invoice", "BLW"),
            ("what is your refund policy", "check_refund_policy", "BL")]
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["flags", "instruction", "category", "intent", "tags", "response"])
        for text, intent, tags in rows:
            w.writerow(["", text, "X", intent, tags, "r"])
    out = fte(["--bitext", str(path), "--details"], kb_database_url)
    assert out.returncode == 0, out.stderr
    lines = [json.loads(line) for line in out.stdout.strip().splitlines()]
    assert [d["expect_escalate"] for d in lines[:-1]] == [False, True, True, False]
    assert lines[-1]["escalation"]["precision"] == 1.0 and lines[-1]["escalation"]["recall"] == 1.0


def test_eval_needs_exactly_one_input(kb_database_url, tmp_path):
    assert fte([], kb_database_url).returncode == 2
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"id": "1", "channel": "fax", "text": "hi"}) + "\n")
    out = fte([str(bad)], kb_database_url)
    assert out.returncode == 2 and "line 1: channel" in out.stderr and "Traceback" not in out.stderr


def test_eval_refuses_an_empty_knowledge_base(migrated_db, tmp_path):
    items = tmp_path / "items.jsonl"
    items.write_text(json.dumps(ITEMS[0]) + "\n")
    out = fte([str(items)], migrated_db)
    assert out.returncode == 2 and "knowledge base is empty" in out.stderr, out.stderr[-2000:]
    assert "Traceback" not in out.stderr


def test_hand_written_samples_meet_the_floors(kb_database_url):
    """Realistic messages written apart from Bitext: escalations right, and confident answers
    from an article tagged with the expected intent, but for at most two (measured: two,
    "When should it arrive?" routed to order tracking and "add another item to my order" to
    placing an order, both confident routes of the model with sentence vectors)."""
    from tests.flows.conftest import REPO

    out = fte([str(REPO / "flows" / "eval" / "support_samples.jsonl"), "--details"], kb_database_url)
    assert out.returncode == 0, out.stderr
    lines = [json.loads(line) for line in out.stdout.strip().splitlines()]
    details, summary = lines[:-1], lines[-1]
    assert summary["escalation"]["precision"] >= 0.9 and summary["escalation"]["recall"] >= 0.9
    assert summary["kb"]["hit_at_3"] >= 0.9 and summary["format_violations"] == 0
    answered = [d for d in details if d["action"] == "answer" and d["expect_intent"]]
    assert len(answered) >= 12
    assert sum(d["expect_intent"] not in d["kb"][0]["intents"] for d in answered) <= 2


def test_eval_scores_out_of_scope_and_multi_turn_history(kb_database_url, tmp_path):
    items = [
        {"id": "o1", "channel": "web", "text": "What is the capital of France?",
         "expect_intent": None, "expect_escalate": False},
        {"id": "m1", "channel": "whatsapp", "text": "how do I reset my password", "expect_intent": None,
         "expect_escalate": True, "expect_reason": "unresolved",
         "history": [{"direction": "inbound", "body": "how do I reset my password"},
                     {"direction": "outbound", "body": "Open Sign in and choose Forgot password."}]},
    ]
    path = tmp_path / "items.jsonl"
    path.write_text("\n".join(json.dumps(i) for i in items) + "\n")
    out = fte([str(path), "--details"], kb_database_url)
    assert out.returncode == 0, out.stderr
    lines = [json.loads(line) for line in out.stdout.strip().splitlines()]
    by_id = {d["id"]: d for d in lines[:-1]}
    assert by_id["o1"]["action"] != "answer"
    assert by_id["m1"]["escalated"] and by_id["m1"]["reason"] == "unresolved"
    assert lines[-1]["out_of_scope"] == {"n": 1, "answered": 0.0}
    assert lines[-1]["escalation"]["recall_by_reason"] == {"unresolved": {"n": 1, "recall": 1.0}}


def _summary(args, url):
    out = fte([*args], url)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_heldout_floors_written_messages(kb_database_url):
    """Messages written for the shop before any result on them was seen (never trained on)."""
    from tests.flows.conftest import REPO

    s = _summary([str(REPO / "flows" / "eval" / "written_heldout.jsonl")], kb_database_url)
    assert s["escalation"]["precision"] >= WRITTEN["precision"]
    assert s["escalation"]["recall"] >= WRITTEN["recall"]
    assert s["resolution"]["answered_right"] >= WRITTEN["answered_right"]
    assert s["resolution"]["answered_wrong"] <= WRITTEN["answered_wrong"]
    assert s["out_of_scope"]["answered"] <= WRITTEN["oos_answered"]


def test_heldout_floors_hint3_and_bitext(kb_database_url):
    from fte.settings import get_settings

    data = get_settings().SHARED_DATA_DIR
    if not (data / "hint3").is_dir():
        pytest.skip("no shared data")
    h = _summary(["--hint3", str(data / "hint3"), "--split", "heldout"], kb_database_url)
    assert h["resolution"]["answered_right"] >= HINT3["answered_right"]
    assert h["resolution"]["answered_wrong"] <= HINT3["answered_wrong"]
    assert h["out_of_scope"]["answered"] <= HINT3["oos_answered"]
    assert h["escalation"]["recall_by_reason"]["human_requested"]["recall"] >= HINT3["human_recall"]
    b = _summary(["--bitext", str(data / "bitext" / "bitext_dev.csv"), "--split", "heldout"],
                 kb_database_url)
    assert b["resolution"]["answered_right"] >= BITEXT["answered_right"]
    assert b["resolution"]["answered_wrong"] <= BITEXT["answered_wrong"]
    assert b["escalation"]["precision"] >= BITEXT["precision"]


# Floors a margin below the held-out figures measured (README), so they do not flake while a
# real regression fails. Held-out data only: never trained or tuned on.
WRITTEN = {"precision": 0.85, "recall": 0.70, "answered_right": 0.45, "answered_wrong": 0.15,
           "oos_answered": 0.10}
HINT3 = {"answered_right": 0.45, "answered_wrong": 0.08, "oos_answered": 0.05, "human_recall": 0.60}
BITEXT = {"answered_right": 0.80, "answered_wrong": 0.02, "precision": 0.95}
