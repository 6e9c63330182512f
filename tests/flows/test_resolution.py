"""Answer or do not (flows/resolution.py): pure decisions on a route, hits and the turns so far."""

from flows.knowledge import KbHit
from flows.resolution import CLARIFY_OPENING, Turn, resolve
from flows.routing import Route


def hit(slug, intents, score, escalate=None, title=None):
    return KbHit(1, slug, 0, title or slug.replace("-", " ").title(), "Body.", tuple(intents), score,
                 score, score, 0.0, escalate)


SHIPPING = hit("shipping-options", ["delivery_options"], 0.45)
TIMES = hit("shipping-times", ["delivery_period"], 0.50)
REFUND = hit("requesting-a-refund", ["get_refund"], 0.60, escalate="refund")


def route(label, p, *rest):
    return Route(label, p, ((label, p), *rest))


def test_answers_when_model_and_retrieval_agree_even_if_another_article_scores_higher():
    r = resolve("do you ship to canada", route("intent:delivery_options", 0.7,
                                               ("intent:delivery_period", 0.2)), [TIMES, SHIPPING], [])
    assert r.action == "answer" and r.hit.slug == "shipping-options"


def test_asks_one_specific_question_when_the_model_is_unsure():
    r = resolve("shipping", route("intent:delivery_options", 0.30, ("intent:delivery_period", 0.28)),
                [TIMES, SHIPPING], [])
    assert r.action == "clarify" and r.text.startswith(CLARIFY_OPENING)
    assert "Shipping Options" in r.text and "Shipping Times" in r.text


def test_out_of_scope_gets_the_scope_question_not_an_article():
    r = resolve("what's the weather", route("out_of_scope", 0.9), [SHIPPING], [])
    assert r.action == "clarify" and "orders, delivery" in r.text


def test_after_one_unanswered_clarification_escalates_low_confidence():
    history = [Turn("inbound", "hello"), Turn("outbound", f"{CLARIFY_OPENING}, could you ...")]
    r = resolve("the thing", route("out_of_scope", 0.5), [SHIPPING], history)
    assert r.action == "escalate" and r.reason == "low_confidence"


def test_an_escalate_article_hands_over_instead_of_being_pasted():
    r = resolve("refund please", route("intent:get_refund", 0.8), [REFUND], [])
    assert r.action == "escalate" and r.reason == "refund"


def test_that_did_not_help_and_the_same_question_again_escalate_unresolved():
    answered = [Turn("inbound", "where is my order 123"), Turn("outbound", "You can track it in Orders.")]
    r = resolve("that didn't help", route("out_of_scope", 0.6), [], answered)
    assert (r.action, r.reason) == ("escalate", "unresolved") and "did not help" in r.text
    r = resolve("where is my order 123?", route("intent:track_order", 0.9), [SHIPPING], answered)
    assert (r.action, r.reason) == ("escalate", "unresolved") and "same question" in r.text


def test_words_like_not_working_in_a_first_message_are_not_a_signal():
    r = resolve("my discount code did not work", route("intent:delivery_options", 0.9), [SHIPPING], [])
    assert r.action == "answer"
