"""Knowledge base page: search, usage, and editing through the knowledge module."""

import pytest
from console_apptest import frame_with, open_page, texts


def test_articles_are_listed_and_searched(console_env):
    at = open_page("knowledge")
    articles = frame_with(at, "chunks")
    assert articles["slug"].tolist() == ["refund-policy", "track-order"]
    assert list(articles.set_index("slug").loc["refund-policy", "intents"]) == ["get_refund", "check_refund_policy"]
    at.text_input(key="kb_query").input("parcel").run()
    assert frame_with(at, "chunks")["slug"].tolist() == ["track-order"]


def test_a_question_shows_what_the_agents_search_would_use(console_env, db):
    pytest.importorskip("flows.knowledge", reason="the knowledge module (brain) is not in the tree yet")
    from console import actions

    # Embed the seeded articles the way `fte kb load` does, through the console's save.
    for slug, title, body, intents in db.execute("SELECT slug, title, body, intents FROM knowledge_base").fetchall():
        actions.kb_save("seed", slug=slug, title=title, body=body, intents=intents, tags=[])
    at = open_page("knowledge")
    at.text_input(key="kb_ask").input("where is my parcel, tracking shows nothing").run()
    hits = frame_with(at, "score")
    assert hits["slug"].iloc[0] == "track-order"
    assert 0 < hits["score"].iloc[0] <= 1


def test_usage_shows_top_articles_and_questions_that_found_nothing(console_env):
    at = open_page("knowledge")
    assert len(at.get("vega_lite_chart")) == 1  # articles that answered most
    missing = frame_with(at, "nearest")
    assert missing["query"].tolist() == ["do you sell gift wrapping for mattresses"]


def test_choosing_an_article_loads_it_into_the_editor(console_env):
    at = open_page("knowledge")
    at.selectbox(key="kb_selected").select("track-order").run()
    assert at.text_input(key="kb_title").value == "Track your order"
    assert "Track to see where your parcel is" in at.text_area(key="kb_body").value
    assert at.text_input(key="kb_intents").value == "track_order"


def test_save_validates_before_touching_the_knowledge_base(console_env, db):
    from console import actions

    for bad, field in [({"slug": "Bad Slug!"}, "slug:"), ({"title": "x"}, "title:"), ({"body": "short"}, "body:")]:
        article = {"slug": "gift-wrapping", "title": "Gift wrapping",
                   "body": "We wrap gifts for a small fee at checkout.", "intents": [], "tags": [], **bad}
        with pytest.raises(ValueError, match=field):
            actions.kb_save("ana", **article)
    assert db.execute("SELECT count(*) FROM knowledge_base").fetchone() == (2,)
    assert db.execute("SELECT count(*) FROM console_audit").fetchone() == (0,)


def test_editing_is_offered_only_when_the_knowledge_module_is_there(console_env):
    from console import actions

    at = open_page("knowledge")
    missing = actions.missing_modules(*actions.KB_MODULES)
    assert at.button(key="kb_save").disabled == bool(missing)
    assert any("knowledge module" in w.value for w in at.warning) == bool(missing)


def test_add_edit_and_delete_an_article_reembeds_it(console_env, db):
    pytest.importorskip("flows.knowledge", reason="the knowledge module (brain) is not in the tree yet")
    at = open_page("knowledge", user="ana")
    at.text_input(key="kb_slug").input("gift-wrapping")
    at.text_input(key="kb_title").input("Gift wrapping")
    at.text_area(key="kb_body").input("We wrap gifts for a small fee. Choose gift wrapping at checkout "
                                      "and add a message for the recipient.")
    at.text_input(key="kb_intents").input("place_order")
    at.button(key="kb_save").click().run()
    assert not at.exception, at.exception
    assert "Saved and re-embedded" in texts(at)
    rows = db.execute("SELECT title, intents, embedding IS NOT NULL FROM knowledge_base "
                      "WHERE slug = 'gift-wrapping'").fetchall()
    assert rows and all(r[2] for r in rows) and rows[0][1] == ["place_order"]

    at.selectbox(key="kb_selected").select("gift-wrapping").run()
    at.text_area(key="kb_body").input("Gift wrapping costs 3 EUR. Choose it at checkout and add a card message.")
    at.button(key="kb_save").click().run()
    bodies = " ".join(r[0] for r in db.execute("SELECT body FROM knowledge_base WHERE slug = 'gift-wrapping'"))
    assert "3 EUR" in bodies

    at.checkbox(key="kb_confirm_delete").check().run()
    at.button(key="kb_delete").click().run()
    assert db.execute("SELECT count(*) FROM knowledge_base WHERE slug = 'gift-wrapping'").fetchone() == (0,)
    assert [r[0] for r in db.execute("SELECT action FROM console_audit WHERE actor = 'ana' ORDER BY id")] == [
        "kb_save", "kb_save", "kb_delete"]


def test_a_lead_labels_a_wrong_answer_and_it_is_stored_for_training(console_env, db):
    db.execute("UPDATE messages SET handled_as = 'answered', handled_at = now() "
               "WHERE channel_message_id = 'gm-linus-1'")
    at = open_page("knowledge")
    at.selectbox(key="lbl_message").select("email:gm-linus-1").run()
    at.radio(key="lbl_verdict").set_value("wrong_answer").run()
    at.selectbox(key="lbl_slug").select("refund-policy").run()
    at.button(key="lbl_save").click().run()
    row = db.execute("SELECT verdict, label, slug, labelled_by FROM routing_labels "
                     "WHERE inbound_key = 'email:gm-linus-1'").fetchone()
    assert row[:3] == ("wrong_answer", "intent:get_refund", "refund-policy") and row[3]
    # the training data reads it back as a lead's example
    from flows.routing_data import lead_examples
    from fte.commands.model import lead_labels

    [example] = list(lead_examples(lead_labels(console_env["database_url"])))
    assert example.label == "intent:get_refund" and example.source == "lead"


def test_a_missed_escalation_needs_its_reason(console_env, db):
    db.execute("UPDATE messages SET handled_as = 'answered', handled_at = now() "
               "WHERE channel_message_id = 'gm-linus-1'")
    at = open_page("knowledge")
    at.selectbox(key="lbl_message").select("email:gm-linus-1").run()
    at.radio(key="lbl_verdict").set_value("missed_escalation").run()
    at.button(key="lbl_save").click().run()
    assert any("reason" in e.value for e in at.error)
    assert db.execute("SELECT count(*) FROM routing_labels").fetchone()[0] == 0


def test_usage_lists_questions_most_often_without_a_confident_answer(console_env):
    at = open_page("knowledge")
    unsure = frame_with(at, "times")
    assert unsure["question"].tolist() == ["do you sell gift wrapping for mattresses"]
