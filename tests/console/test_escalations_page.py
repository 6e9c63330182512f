"""Escalations: the queue, filters, assign, resolve, and a human reply through the outbox."""

from console_apptest import open_page, texts


def test_queue_lists_open_escalations_most_urgent_first(console_env):
    at = open_page("escalations")
    queue = at.dataframe[0].value
    assert queue["id"].tolist() == [2, 1]  # Grace (high) before Ada (normal)
    assert queue["reason"].tolist() == ["human_requested", "refund"]
    assert at.selectbox(key="esc_selected").value == 2
    shown = texts(at)
    assert "I need to talk to a human agent please" in shown
    assert "Business hours:" in shown


def test_filters_narrow_the_queue_by_reason_and_channel(console_env):
    at = open_page("escalations")
    at.multiselect(key="esc_reason").select("refund").run()
    assert at.dataframe[0].value["id"].tolist() == [1]
    at.multiselect(key="esc_reason").unselect("refund").run()
    at.multiselect(key="esc_channel").select("whatsapp").run()
    assert at.dataframe[0].value["id"].tolist() == [2]
    at.selectbox(key="esc_age").select("older than 1 day").run()
    assert "Nothing in the queue" in texts(at)


def test_messages_since_the_escalation_span_channels(console_env):
    at = open_page("escalations")
    at.selectbox(key="esc_selected").select(1).run()
    shown = texts(at)
    assert "I want a refund for order 1234" in shown  # the triggering email
    assert "Any news on my refund? Still waiting." in shown  # later, on WhatsApp
    # The escalation's own channel and address (email), not the channel Ada last used.
    assert "Goes by **email** to **ada\\@example\\.com**" in shown
    assert "The customer was told" in shown and "a person will follow up" in shown


def test_assign_to_me_records_who_and_when(console_env, db):
    at = open_page("escalations", user="ana")
    at.button(key="esc_assign").click().run()
    assert not at.exception, at.exception
    status, assigned_to, assigned_at = db.execute(
        "SELECT status, assigned_to, assigned_at FROM escalations WHERE id = 2").fetchone()
    assert (status, assigned_to) == ("assigned", "ana") and assigned_at is not None
    assert at.dataframe[0].value.set_index("id").loc[2, "assigned_to"] == "ana"
    assert db.execute("SELECT actor, action FROM console_audit WHERE target = 'escalation:2'").fetchall() == [
        ("ana", "assign")]


def test_resolve_hands_the_customer_back_to_the_agent(console_env, db):
    at = open_page("escalations", user="ana")
    at.text_input(key="esc_note").input("refund sent manually")
    at.button(key="esc_resolve").click().run()
    assert not at.exception, at.exception
    row = db.execute("SELECT status, resolved_by, resolution_note, resolved_at IS NOT NULL "
                     "FROM escalations WHERE id = 2").fetchone()
    assert row == ("resolved", "ana", "refund sent manually", True)
    assert db.execute("SELECT status FROM tickets WHERE id = 'T-grace-1'").fetchone() == ("resolved",)
    # No longer in the default queue (open + assigned); the flow may answer Grace again.
    assert at.dataframe[0].value["id"].tolist() == [1]
    assert db.execute("SELECT count(*) FROM escalations WHERE customer_id = 2 "
                      "AND status IN ('open', 'assigned')").fetchone() == (0,)


def test_reply_as_a_human_goes_through_the_outbox_with_its_event(console_env, db):
    from schema.events import SupportEvent, parse_event

    at = open_page("escalations", user="ana")
    # Ada's escalation came by email; she wrote on WhatsApp since: the reply still goes to
    # the escalation's own channel and address.
    at.selectbox(key="esc_selected").select(1).run()
    at.text_area(key="esc_reply_text").input("Hi Ada, I have refunded order 1234 today.")
    at.button(key="esc_reply_send").click().run()
    assert not at.exception, at.exception
    assert "Reply queued for email" in texts(at)
    assert at.text_area(key="esc_reply_text").value == ""

    outbox = db.execute("SELECT inbound_key, kind, channel, recipient, body, escalation_id, customer_id "
                        "FROM reply_outbox WHERE kind = 'human'").fetchall()
    assert len(outbox) == 1
    key, _kind, channel, recipient, body, escalation_id, customer_id = outbox[0]
    assert key.startswith("human:") and (channel, escalation_id, customer_id) == ("email", 1, 1)
    assert recipient == "ada@example.com" and "refunded order 1234" in body
    sent = db.execute("SELECT author, direction, channel FROM messages WHERE in_reply_to = %s "
                      "OR channel_message_id LIKE %s", (key, f"%{key.split(':', 1)[1]}%")).fetchall()
    assert ("human", "outbound", "email") in sent

    # Its `replied` event (reply kind human) is in the event outbox, committed with the reply.
    (events,) = db.execute("SELECT events FROM event_outbox WHERE batch_key = %s", (key,)).fetchone()
    [(topic, event_key, value)] = events
    event = parse_event(SupportEvent, value.encode())
    assert (topic, event_key) == ("support.events", "1")
    assert (event.kind.value, event.reply_kind, event.customer_id, event.inbound_key) == (
        "replied", "human", 1, key)


def test_human_reply_is_formatted_for_the_escalations_own_channel(console_env, db):
    import pytest

    pytest.importorskip("flows.formatting", reason="the channel formatter is not in the tree yet")
    from console import actions, data
    from schema.events import Channel, ReplyKind

    esc_grace = data.escalation(2)
    with data.connection() as conn:
        target = actions.reply_target(conn, esc_grace)
    reply = actions.build_human_reply(esc_grace, target, "Your refund for order 1234 is on its way. " * 12, "r" * 32)
    assert (reply.channel, reply.kind, reply.inbound_key) == (Channel.WHATSAPP, ReplyKind.HUMAN, "human:" + "r" * 32)
    assert reply.recipient == "whatsapp:+15550100200"
    assert reply.parts and all(len(p) <= 300 for p in reply.parts) and len(reply.parts) > 1
    # Ada (email escalation, WhatsApp since): her email address, in her Gmail thread.
    with data.connection() as conn:
        target = actions.reply_target(conn, data.escalation(1))
    assert (target.channel, target.recipient, target.thread_id) == (Channel.EMAIL, "ada@example.com", "thr-ada")

    # Linus wrote by email: the reply is threaded in his Gmail thread with "Re:".
    db.execute("""INSERT INTO escalations (id, customer_id, conversation_id, ticket_id, inbound_key, channel,
                  reason) VALUES (7, 4, 3, 'T-linus-1', 'email:gm-linus-1', 'email', 'complaint')""")
    esc_linus = data.escalation(7)
    with data.connection() as conn:
        target = actions.reply_target(conn, esc_linus)
    reply = actions.build_human_reply(esc_linus, target, "I have chased the courier for you.", "s" * 32)
    assert reply.channel == Channel.EMAIL and reply.recipient == "linus@example.net"
    assert reply.subject == "Re: Where is my parcel?" and reply.thread_id == "thr-linus"
    assert reply.html and "I have chased the courier" in reply.body and reply.body.startswith("Hi Linus")
