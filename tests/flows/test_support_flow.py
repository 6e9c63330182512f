"""The support flow end to end: real Kafka, real Postgres, `fte flow` as a child process,
the outbox dispatcher, and the local Gmail/Twilio API servers (through the real SDKs)."""

from __future__ import annotations

import json
import uuid

import pytest
from support_harness import *
from support_harness import (
    FlowProcess,
    dispatcher,
    event_relay,
    inbound,
    publish,
    query,
    sandbox_get,
    wait_for,
    whatsapp_sent,
)

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def running(flow_env, tmp_path_factory):
    log = tmp_path_factory.mktemp("logs") / "flow.log"
    flow = FlowProcess(flow_env, log=log).start()
    sender = dispatcher(flow_env).start()
    relay = event_relay(flow_env).start()
    yield flow_env
    relay.stop()
    sender.stop()
    flow.stop()
    if not flow.alive():
        print(log.read_text()[-3000:])


def handled(env, inbound_key: str) -> dict | None:
    channel, _, cmid = inbound_key.partition(":")
    rows = query(env["DATABASE_URL"], "SELECT * FROM messages WHERE channel=%s AND channel_message_id=%s "
                 "AND handled_at IS NOT NULL", (channel, cmid))
    return rows[0] if rows else None


def outbox(env, inbound_key: str) -> dict | None:
    rows = query(env["DATABASE_URL"], "SELECT * FROM reply_outbox WHERE inbound_key=%s", (inbound_key,))
    return rows[0] if rows else None


def sent_row(env, inbound_key: str) -> dict | None:
    row = outbox(env, inbound_key)
    return row if row and row["status"] == "sent" else None


def test_email_answered_in_thread_through_gmail_api(running, channel_apis):
    addr = f"ann.{uuid.uuid4().hex[:6]}@x.com"
    msg = inbound("email", "Hello, how can I track my order? I would like to know where my parcel is.",
                  email=addr, subject="Where is my order", name="Ann Smith")
    publish(running, [msg])
    row = wait_for(lambda: sent_row(running, msg.inbound_key), 60, message="email reply sent")
    assert row["kind"] in ("agent", "clarify")
    mails = [m for m in sandbox_get(channel_apis, "/_sandbox/gmail/sent")["data"] if m["to"] == addr]
    assert len(mails) == 1
    mail = mails[0]
    assert mail["subject"] == "Re: Where is my order"
    assert mail["in_reply_to"] == msg.metadata["message_id_header"]
    assert mail["threadId"] == msg.thread_id
    assert mail["text"].startswith("Hi Ann,") and mail["html"]
    assert len(mail["text"].split()) <= 500
    inbound_row = handled(running, msg.inbound_key)
    assert inbound_row["ticket_id"] and inbound_row["conversation_id"]


def test_whatsapp_answered_through_twilio_api_in_parts(running, channel_apis):
    phone = f"+1555{uuid.uuid4().int % 10_000_000:07d}"
    msg = inbound("whatsapp", "how do I change my shipping address", phone=phone)
    publish(running, [msg])
    row = wait_for(lambda: sent_row(running, msg.inbound_key), 60, message="whatsapp reply sent")
    sent = whatsapp_sent(channel_apis, phone)
    assert len(sent) == len(row["payload"]["parts"]) == row["parts_sent"] >= 1
    assert all(len(m["body"]) <= 300 for m in sent)
    assert sorted(m["sid"] for m in sent) == sorted(row["provider_message_ids"])


def test_web_answered_and_ticket_linked(running):
    addr = f"web.{uuid.uuid4().hex[:6]}@x.com"
    msg = inbound("web", "What payment methods do you accept?", email=addr, subject="Payment",
                  metadata={"category": "billing", "name": "Web User"})
    publish(running, [msg])
    row = wait_for(lambda: sent_row(running, msg.inbound_key), 60, message="web reply delivered")
    assert len(row["body"].split()) <= 300
    ticket = query(running["DATABASE_URL"], "SELECT * FROM tickets WHERE id=%s", (msg.ticket_id,))[0]
    assert ticket["customer_id"] == row["customer_id"] and ticket["conversation_id"]
    assert ticket["category"] == "billing"


def test_journey_email_web_whatsapp_is_one_customer(running, channel_apis):
    addr = f"a.{uuid.uuid4().hex[:6]}@x.com"
    phone = f"+1555{uuid.uuid4().int % 10_000_000:07d}"
    first = inbound("email", "I want to cancel my order please", email=addr, subject="Cancel order")
    publish(running, [first])
    wait_for(lambda: handled(running, first.inbound_key), 60, message="email handled")
    # Both identifiers confirmed (as after /support/verify): only then do they link.
    web = inbound("web", "How do I set up a shipping address?", email=addr, phone=phone,
                  subject="Shipping address", verified=True)
    publish(running, [web])
    wait_for(lambda: handled(running, web.inbound_key), 60, message="web handled")
    wa = inbound("whatsapp", "what are the delivery options?", phone=phone)
    publish(running, [wa])
    wait_for(lambda: sent_row(running, wa.inbound_key), 60, message="whatsapp reply")
    ids = query(running["DATABASE_URL"],
                "SELECT customer_id, kind, value FROM customer_identifiers WHERE value IN (%s, %s)",
                (addr, phone))
    assert {(r["kind"], r["value"]) for r in ids} == {("email", addr), ("phone", phone)}
    assert len({r["customer_id"] for r in ids}) == 1
    customer = ids[0]["customer_id"]
    rows = query(running["DATABASE_URL"], "SELECT DISTINCT customer_id, conversation_id FROM messages "
                 "WHERE channel_message_id IN (%s, %s, %s)",
                 (first.channel_message_id, web.channel_message_id, wa.channel_message_id))
    assert {r["customer_id"] for r in rows} == {customer}
    assert len({r["conversation_id"] for r in rows}) == 1  # one conversation across channels
    switches = query(running["DATABASE_URL"], "SELECT from_channel, to_channel FROM channel_switches "
                     "WHERE conversation_id=%s ORDER BY id", (rows[0]["conversation_id"],))
    assert [(s["from_channel"], s["to_channel"]) for s in switches] == [("email", "web"), ("web", "whatsapp")]
    # The conversation started by email. The web reply quotes no other channel (the ticket
    # page is public to whoever holds its id); the WhatsApp reply acknowledges that email.
    web_reply = outbox(running, web.inbound_key)["body"]
    assert "I see you" not in web_reply
    sent = whatsapp_sent(channel_apis, phone)
    text = " ".join(m["body"] for m in sent)
    assert "I see you emailed us on" in text and "Cancel order" in text


def test_merge_two_customers_into_the_older(running):
    addr = f"m.{uuid.uuid4().hex[:6]}@x.com"
    phone = f"+1555{uuid.uuid4().int % 10_000_000:07d}"
    a = inbound("email", "Where can I see my invoice?", email=addr, subject="Invoice")
    publish(running, [a])
    wait_for(lambda: handled(running, a.inbound_key), 60, message="email")
    b = inbound("whatsapp", "how can I see my invoices", phone=phone)
    publish(running, [b])
    wait_for(lambda: handled(running, b.inbound_key), 60, message="whatsapp")
    older = handled(running, a.inbound_key)["customer_id"]
    newer = handled(running, b.inbound_key)["customer_id"]
    assert older < newer
    c = inbound("web", "invoice question", email=addr, phone=phone, subject="Invoice", verified=True)
    publish(running, [c])
    wait_for(lambda: handled(running, c.inbound_key), 60, message="web")
    merges = query(running["DATABASE_URL"], "SELECT * FROM customer_merges WHERE merged_id=%s", (newer,))
    assert len(merges) == 1 and merges[0]["survivor_id"] == older
    assert merges[0]["moved"]["messages"] >= 1
    owners = query(running["DATABASE_URL"], "SELECT DISTINCT customer_id FROM messages WHERE "
                   "channel_message_id IN (%s, %s, %s) OR in_reply_to IN (%s, %s, %s)",
                   (a.channel_message_id, b.channel_message_id, c.channel_message_id,
                    a.inbound_key, b.inbound_key, c.inbound_key))
    assert [r["customer_id"] for r in owners] == [older]


def test_human_takeover_then_resolve(running, channel_apis):
    addr = f"h.{uuid.uuid4().hex[:6]}@x.com"
    phone = f"+1555{uuid.uuid4().int % 10_000_000:07d}"
    link = inbound("web", "How do I create an account?", email=addr, phone=phone, subject="Account",
                   verified=True)  # both confirmed (/support/verify): they link
    publish(running, [link])
    wait_for(lambda: handled(running, link.inbound_key), 60, message="link")
    angry = inbound("email", "I want to speak to a human agent now", email=addr, subject="Help")
    publish(running, [angry])
    esc = wait_for(lambda: query(running["DATABASE_URL"], "SELECT * FROM escalations WHERE inbound_key=%s",
                                 (angry.inbound_key,)), 60, message="escalation")[0]
    assert esc["reason"] == "human_requested" and esc["status"] == "open"
    assert wait_for(lambda: sent_row(running, angry.inbound_key), 60)["kind"] == "escalation_ack"
    follow = [inbound("whatsapp", "hello? what are the shipping options", phone=phone),
              inbound("whatsapp", "and how long does delivery take", phone=phone)]
    publish(running, follow)
    for m in follow:
        row = wait_for(lambda m=m: handled(running, m.inbound_key), 60, message="follow-up handled")
        assert row["handled_as"] == "attached" and row["escalation_id"] == esc["id"]
    kinds = [r["kind"] for r in query(running["DATABASE_URL"], "SELECT kind FROM reply_outbox WHERE "
                                      "inbound_key = ANY(%s)", ([m.inbound_key for m in follow],))]
    assert kinds == ["holding"]  # one holding acknowledgement, no agent answer
    assert query(running["DATABASE_URL"], "SELECT holding_ack_sent FROM escalations WHERE id=%s",
                 (esc["id"],))[0]["holding_ack_sent"]
    query(running["DATABASE_URL"], "UPDATE escalations SET status='resolved', resolved_at=now(), "
          "resolved_by='lead' WHERE id=%s RETURNING id", (esc["id"],))
    after = inbound("whatsapp", "how do I track my order", phone=phone)
    publish(running, [after])
    row = wait_for(lambda: sent_row(running, after.inbound_key), 60, message="answered again")
    assert row["kind"] in ("agent", "clarify")


def test_invalid_events_become_dead_letters(running):
    bad_json = b"{not json"
    missing = json.dumps({"channel": "email", "channel_message_id": "x1", "sender": [],
                          "body": "hi", "received_at": "2026-01-01T00:00:00Z"}).encode()
    bad_phone = inbound("whatsapp", "hello", phone="+1555").to_bytes()
    publish(running, [("email", bad_json), ("email", missing), ("whatsapp", bad_phone)])
    raws = {bad_json, missing, bad_phone}
    rows = wait_for(lambda: [r for r in query(running["DATABASE_URL"], "SELECT * FROM dead_letters")
                             if bytes(r["raw"]) in raws] if True else None, 60, message="dead letters")
    rows = wait_for(lambda: len([r for r in query(running["DATABASE_URL"], "SELECT * FROM dead_letters")
                                 if bytes(r["raw"]) in raws]) == 3 and
                    [r for r in query(running["DATABASE_URL"], "SELECT * FROM dead_letters")
                     if bytes(r["raw"]) in raws], 60, message="3 dead letters")
    reasons = {bytes(r["raw"]): r["reason"] for r in rows}
    assert "json" in reasons[bad_json].lower()
    assert reasons[missing].startswith("sender")
    assert "phone" in reasons[bad_phone]
    assert all(r["source_topic"].startswith(running["TOPIC_PREFIX"]) for r in rows)
    progress = query(running["DATABASE_URL"], "SELECT * FROM flow_progress WHERE flow='support'")
    assert progress and all(p["next_offset"] > 0 for p in progress)


def test_support_events_and_escalations_published(running):
    from confluent_kafka import Consumer

    from schema.events import Escalation, SupportEvent

    addr = f"e.{uuid.uuid4().hex[:6]}@x.com"
    answered = inbound("email", "How can I track my order?", email=addr, subject="Tracking")
    refund = inbound("web", "I want a refund for my broken blender", email=f"r{addr}", subject="Refund")
    publish(running, [answered, refund])
    wait_for(lambda: handled(running, answered.inbound_key) and handled(running, refund.inbound_key), 60)
    consumer = Consumer({"bootstrap.servers": running["KAFKA_BOOTSTRAP_SERVERS"],
                         "group.id": uuid.uuid4().hex, "auto.offset.reset": "earliest"})
    prefix = running["TOPIC_PREFIX"]
    consumer.subscribe([f"{prefix}support.events", f"{prefix}support.escalations"])
    kinds: dict[str, set] = {answered.inbound_key: set(), refund.inbound_key: set()}
    escalations = []

    def collect():
        for m in consumer.consume(500, timeout=1):
            if m.error():
                continue
            if m.topic().endswith("support.escalations"):
                escalations.append(Escalation.model_validate_json(m.value()))
            else:
                e = SupportEvent.model_validate_json(m.value())
                if e.inbound_key in kinds:
                    kinds[e.inbound_key].add(e.kind.value)
        return {"received", "ticket_opened", "replied", "sent"} <= kinds[answered.inbound_key] \
            and {"received", "escalated", "ticket_opened"} <= kinds[refund.inbound_key] \
            and any(e.inbound_key == refund.inbound_key for e in escalations)
    try:
        wait_for(collect, 60, message=f"events {kinds}")
    finally:
        consumer.close()
    esc = next(e for e in escalations if e.inbound_key == refund.inbound_key)
    assert esc.reason.value == "refund"


def test_conversation_continues_within_window_and_restarts_after(running):
    from datetime import UTC, datetime, timedelta

    addr = f"w.{uuid.uuid4().hex[:6]}@x.com"
    old = inbound("email", "How do I reset my password?", email=addr, subject="Password")
    old = old.model_copy(update={"received_at": datetime.now(UTC) - timedelta(hours=30)})
    publish(running, [old])
    first = wait_for(lambda: handled(running, old.inbound_key), 60, message="old message")
    new = inbound("web", "How do I create an account?", email=addr, subject="Account", verified=True)
    later = inbound("web", "And how do I subscribe to the newsletter?", email=addr, subject="News",
                    verified=True)
    publish(running, [new])
    second = wait_for(lambda: handled(running, new.inbound_key), 60, message="new message")
    publish(running, [later])
    third = wait_for(lambda: handled(running, later.inbound_key), 60, message="later message")
    assert second["conversation_id"] != first["conversation_id"]  # idle > 24 h: a new one
    assert third["conversation_id"] == second["conversation_id"]
    convs = query(running["DATABASE_URL"], "SELECT id, status FROM conversations WHERE customer_id=%s "
                  "ORDER BY id", (first["customer_id"],))
    assert [c["status"] for c in convs] == ["closed", "open"]
    assert second["ticket_id"] != first["ticket_id"]


def test_poison_message_is_dead_lettered_and_the_rest_answered(running):
    addr = f"n.{uuid.uuid4().hex[:6]}@x.com"
    ok = inbound("email", "How can I track my order?", email=addr, subject="Tracking")
    poison = inbound("email", "How can I track my order?\x00", email=f"p{addr}", subject="Tracking")
    publish(running, [poison, ok])
    wait_for(lambda: sent_row(running, ok.inbound_key), 60, message="healthy message answered")
    raw = poison.to_bytes()
    rows = wait_for(lambda: [r for r in query(running["DATABASE_URL"], "SELECT * FROM dead_letters "
                                              "WHERE reason LIKE 'handler:%%'") if bytes(r["raw"]) == raw],
                    60, message="poison message dead-lettered")
    assert "NUL" in rows[0]["reason"] or "0x00" in rows[0]["reason"]
