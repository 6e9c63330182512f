"""Issue 9 in the running flow: a web form naming someone else's phone or email gets a
customer of its own; linking happens only after verification; one acknowledgement per
conversation; a burst beyond the per-customer limit is coalesced with one wait notice.
Real Kafka, Postgres, `fte flow` as a child process."""

from __future__ import annotations

import uuid

import psycopg
import pytest
from support_harness import *
from support_harness import FlowProcess, dispatcher, inbound, publish, query, wait_for

from flows.rate_limit import WAIT_TEXT
from schema.events import Identifier, IdentifierKind
from sinks.identity import link_verified

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def running(flow_env, tmp_path_factory):
    log = tmp_path_factory.mktemp("logs") / "flow.log"
    flow = FlowProcess(flow_env, log=log).start()
    sender = dispatcher(flow_env).start()
    yield flow_env
    sender.stop()
    flow.stop()
    if not flow.alive():
        print(log.read_text()[-3000:])


def handled(env, msg) -> dict | None:
    rows = query(env["DATABASE_URL"], "SELECT * FROM messages WHERE channel=%s AND channel_message_id=%s "
                 "AND handled_at IS NOT NULL", (msg.channel.value, msg.channel_message_id))
    return rows[0] if rows else None


def reply_of(env, msg) -> dict | None:
    rows = query(env["DATABASE_URL"], "SELECT * FROM reply_outbox WHERE inbound_key=%s", (msg.inbound_key,))
    return rows[0] if rows else None


def new_phone() -> str:
    return f"+1555{uuid.uuid4().int % 10_000_000:07d}"


def test_web_form_with_a_victims_phone_sees_nothing_of_the_victim(running):
    db = running["DATABASE_URL"]
    phone = new_phone()
    victim_msg = inbound("whatsapp", "Hi, my wedding dress from order 7781 arrived torn, I live at "
                         "12 Elm Street", phone=phone, name="Victoria")
    publish(running, [victim_msg])
    victim = wait_for(lambda: handled(running, victim_msg), 60, message="victim handled")["customer_id"]

    attack = inbound("web", "What payment methods do you accept?", email=f"m.{uuid.uuid4().hex[:6]}@evil.com",
                     phone=phone, subject="Payment question", name="Mallory",
                     metadata={"category": "general", "name": "Mallory"})
    publish(running, [attack])
    reply = wait_for(lambda: reply_of(running, attack), 60, message="attacker answered")
    attacker = handled(running, attack)["customer_id"]
    assert attacker != victim
    assert query(db, "SELECT count(*) AS n FROM customer_merges WHERE %s IN (survivor_id, merged_id)",
                 (victim,))[0]["n"] == 0
    for leak in ("Victoria", "I see you", "7781", "Elm Street", "WhatsApp"):
        assert leak not in reply["body"], leak
    # The ticket page reads the ticket's messages; the agent's history reads the customer's.
    ticket_bodies = [r["body"] for r in query(db, "SELECT body FROM messages WHERE ticket_id=%s",
                                                (attack.ticket_id,))]
    attacker_history = [r["body"] for r in query(db, "SELECT body FROM messages WHERE customer_id=%s",
                                                   (attacker,))]
    assert not any("7781" in b for b in ticket_bodies + attacker_history)
    # The phone stays a contact detail of that ticket, not a link of the attacker's.
    assert query(db, "SELECT customer_id FROM customer_identifiers WHERE value=%s", (phone,)) == [
        {"customer_id": victim}]

    # The victim writes again: their own customer, never the attacker's ticket.
    later = inbound("whatsapp", "Any news about the torn dress?", phone=phone)
    publish(running, [later])
    row = wait_for(lambda: handled(running, later), 60, message="victim's next message")
    assert row["customer_id"] == victim and row["ticket_id"] != attack.ticket_id


def test_after_verification_the_web_customer_links_and_the_ack_appears_once(running):
    db = running["DATABASE_URL"]
    phone = new_phone()
    first = inbound("whatsapp", "I want to cancel my order please", phone=phone, name="Vera")
    publish(running, [first])
    owner = wait_for(lambda: handled(running, first), 60, message="whatsapp handled")["customer_id"]
    web = inbound("web", "How do I set up a shipping address?", email=f"v.{uuid.uuid4().hex[:6]}@x.com",
                  phone=phone, subject="Shipping address")
    publish(running, [web])
    assert "I see you" not in wait_for(lambda: reply_of(running, web), 60, message="web reply")["body"]
    web_customer = handled(running, web)["customer_id"]
    assert web_customer != owner
    # The phone is confirmed by its WhatsApp code (ingress/routes/verify.py): now it links.
    with psycopg.connect(db) as conn, conn.transaction():
        survivor, merged = link_verified(conn, web_customer, Identifier(
            kind=IdentifierKind.PHONE, value=phone, verified=True), verified_by="web-code")
    assert merged and survivor == owner
    assert handled(running, web)["customer_id"] == owner

    # Within the conversation, WhatsApp again: acknowledged once, then not on every reply.
    wa1 = inbound("whatsapp", "what are the delivery options?", phone=phone)
    publish(running, [wa1])
    wait_for(lambda: reply_of(running, wa1), 60, message="whatsapp reply 1")
    wa2 = inbound("whatsapp", "and how long does shipping take?", phone=phone)
    publish(running, [wa2])
    wait_for(lambda: reply_of(running, wa2), 60, message="whatsapp reply 2")
    bodies = [reply_of(running, m)["body"] for m in (wa1, wa2)]
    assert sum("I see you" in b for b in bodies) <= 1
    assert "I see you" not in bodies[1]


def test_a_burst_beyond_the_limit_is_coalesced_with_one_wait_notice(running):
    db = running["DATABASE_URL"]
    phone = new_phone()
    burst = [inbound("whatsapp", f"What payment methods do you accept? ({i})", phone=phone)
             for i in range(14)]
    publish(running, burst)
    # The rest of the burst is held until the minute is over, then answered once.
    wait_for(lambda: all(handled(running, m) for m in burst), 150, message="burst handled")
    rows = [handled(running, m) for m in burst]
    assert len({r["customer_id"] for r in rows}) == 1
    outcomes = [r["handled_as"] for r in rows]
    assert outcomes.count("coalesced") == 3, outcomes  # the one told to wait + two held
    assert outcomes[-1] != "coalesced"  # the last of the burst got the one answer
    replies = query(db, "SELECT inbound_key, kind, body FROM reply_outbox WHERE inbound_key = ANY(%s)",
                    ([m.inbound_key for m in burst],))
    notices = [r for r in replies if WAIT_TEXT.split(".")[0] in r["body"]]
    assert len(notices) == 1 and notices[0]["kind"] == "holding"
    assert len(replies) == 12  # ten answers, one notice, one answer for the rest of the burst
    last = handled(running, burst[-1])
    history = query(db, "SELECT body FROM messages WHERE customer_id=%s AND direction='inbound' "
                    "AND occurred_at <= %s", (last["customer_id"], last["occurred_at"]))
    assert {f"What payment methods do you accept? ({i})" for i in (11, 12)} <= {h["body"] for h in history}
