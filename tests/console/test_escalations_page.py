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
    assert "Goes by **whatsapp** to **+15550100100**" in shown  # the channel last used


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
