"""Knowledge base loading and hybrid search against the real Postgres (pgvector)."""

import shutil
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from flows.embeddings import HashingEmbedder
from flows.knowledge import (
    KnowledgeBase,
    chunk_body,
    delete_article,
    load_directory,
    parse_article,
    read_articles,
    save_article,
    search,
    search_many,
)
from schema.db import connect
from tests.flows.conftest import KB_DEMO

BITEXT_INTENTS = {
    "cancel_order", "change_order", "change_shipping_address", "check_cancellation_fee",
    "check_invoice", "check_payment_methods", "check_refund_policy", "complaint",
    "contact_customer_service", "contact_human_agent", "create_account", "delete_account",
    "delivery_options", "delivery_period", "edit_account", "get_invoice", "get_refund",
    "newsletter_subscription", "payment_issue", "place_order", "recover_password",
    "registration_problems", "review", "set_up_shipping_address", "switch_account",
    "track_order", "track_refund",
}
E = HashingEmbedder()


def rows(url, slug):
    with connect(url) as conn:
        return conn.execute("SELECT id, chunk_index, content_hash, updated_at FROM knowledge_base "
                            "WHERE slug = %s ORDER BY chunk_index", (slug,)).fetchall()


def test_demo_knowledge_base_covers_all_27_bitext_intents():
    articles = read_articles(KB_DEMO)
    covered = {i for a in articles for i in a.intents}
    assert covered >= BITEXT_INTENTS
    assert all(a.title and len(a.body) > 200 for a in articles)


def test_front_matter_is_parsed_and_long_bodies_are_chunked_by_paragraph():
    a = parse_article("---\ntitle: Gift cards\nintents: [place_order]\ntags: [gift]\n---\nBody text.",
                      slug="gift-cards")
    assert (a.title, a.intents, a.tags, a.body) == ("Gift cards", ("place_order",), ("gift",), "Body text.")
    body = "\n\n".join(f"Paragraph {i}. " + "Words here. " * 30 for i in range(6))
    chunks = chunk_body(body)
    assert len(chunks) > 1 and all(len(c) <= 900 for c in chunks)
    assert "".join(chunks).replace("\n", "").replace(" ", "") == body.replace("\n", "").replace(" ", "")


def test_kb_load_is_idempotent_and_removes_stale_chunks(kb_database_url, tmp_path):
    src = tmp_path / "kb"
    shutil.copytree(KB_DEMO, src)
    long_body = "\n\n".join(f"Section {i}. " + "Gift cards are valid for two years. " * 20 for i in range(4))
    (src / "gift-cards.md").write_text(f"---\ntitle: Gift cards\nintents: [place_order]\n---\n{long_body}\n")
    with connect(kb_database_url) as conn, conn.transaction():
        first = load_directory(conn, src, embedder=E)
    before = rows(kb_database_url, "gift-cards")
    assert first.embedded_chunks >= len(before) > 1
    with connect(kb_database_url) as conn, conn.transaction():
        again = load_directory(conn, src, embedder=E)
    assert again.embedded_chunks == 0 and again.removed_articles == []
    assert rows(kb_database_url, "gift-cards") == before  # same ids, hashes, timestamps

    (src / "gift-cards.md").write_text("---\ntitle: Gift cards\nintents: [place_order]\n---\nShort now. "
                                       "Gift cards are valid for two years from purchase.\n")
    with connect(kb_database_url) as conn, conn.transaction():
        shrunk = load_directory(conn, src, embedder=E)
    assert shrunk.embedded_chunks == 1
    assert [r[1] for r in rows(kb_database_url, "gift-cards")] == [0]

    (src / "gift-cards.md").unlink()
    with connect(kb_database_url) as conn, conn.transaction():
        pruned = load_directory(conn, src, embedder=E)
    assert pruned.removed_articles == ["gift-cards"]
    assert rows(kb_database_url, "gift-cards") == []


def test_save_and_delete_one_article_re_embeds_on_change(kb_database_url):
    with connect(kb_database_url) as conn, conn.transaction():
        assert save_article(conn, slug="gift-wrapping", title="Gift wrapping", body="We wrap gifts for 2.50 GBP.",
                            intents=["place_order"], tags=["gift"], embedder=E) == 1
        assert save_article(conn, slug="gift-wrapping", title="Gift wrapping", body="We wrap gifts for 2.50 GBP.",
                            intents=["place_order"], tags=["gift"], embedder=E) == 0
        assert save_article(conn, slug="gift-wrapping", title="Gift wrapping", body="We wrap gifts for 3 GBP.",
                            intents=["place_order"], tags=["gift"], embedder=E) == 1
        hit = search(conn, "how much does gift wrapping cost", embedder=E)[0]
        assert hit.slug == "gift-wrapping" and "3 GBP" in hit.body
        assert delete_article(conn, "gift-wrapping") == 1
        assert all(h.slug != "gift-wrapping" for h in search(conn, "gift wrapping", embedder=E))
    with pytest.raises(ValueError, match="slug"), connect(kb_database_url) as conn:
        save_article(conn, slug="Bad Slug", title="x", body="y", embedder=E)


@pytest.mark.parametrize("question, slug", [
    ("how long does delivery take?", "shipping-times"),
    ("I forgot my password and can't log in", "password-recovery"),
    ("which payment methods do you accept", "payment-methods"),
    ("how do I unsubscribe from your newsletter", "newsletter"),
    ("where can I download the invoice for my last order", "invoices"),
    ("what are your phone opening hours", "contact-us"),
    ("I want to close my account", "deleting-your-account"),
    ("how can I change the delivery address on my order", "shipping-address-change"),
])
def test_hybrid_search_finds_the_right_article(kb_database_url, question, slug):
    with connect(kb_database_url) as conn:
        hits = search(conn, question, embedder=E, k=3)
    assert hits[0].slug == slug, [(h.slug, h.score) for h in hits]
    assert 0 < hits[0].score <= 1 and hits[0].intents and hits[0].title and hits[0].body
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


def test_batched_search_equals_one_by_one_and_handles_stopword_only_queries(kb_database_url):
    questions = ["track my parcel", "cancel my order", "the and of", "refund policy", "cancel my order"]
    with connect(kb_database_url) as conn:
        batched = search_many(conn, questions, embedder=E, k=3)
        single = [search(conn, q, embedder=E, k=3) for q in questions]
    assert batched == single
    assert len(batched) == 5 and batched[2] == []


def test_knowledge_base_cache_follows_a_reload(kb_database_url):
    kb = KnowledgeBase(kb_database_url, E, check_s=0.2)
    q = "do you sell garden gnomes"
    assert all(h.slug != "garden-gnomes" for h in kb.search(q))
    with ThreadPoolExecutor(4) as pool:  # thread-safe under concurrent callers
        results = list(pool.map(kb.search, [q] * 8))
    assert all(r == results[0] for r in results)
    with connect(kb_database_url) as conn, conn.transaction():
        save_article(conn, slug="garden-gnomes", title="Garden gnomes",
                     body="Yes, we sell garden gnomes in three sizes.", intents=["place_order"], embedder=E)
    time.sleep(0.3)
    assert kb.search(q)[0].slug == "garden-gnomes"
    with connect(kb_database_url) as conn, conn.transaction():
        delete_article(conn, "garden-gnomes")


def test_a_question_without_content_words_finds_nothing(kb_database_url):
    with connect(kb_database_url) as conn:
        assert search(conn, "the and of", embedder=E) == []
        assert search(conn, "", embedder=E) == []


def test_kb_lookups_are_recorded_once_per_inbound_message(kb_database_url):
    from flows.knowledge import record_lookups

    with connect(kb_database_url) as conn, conn.transaction():
        hit = search(conn, "reset my password", embedder=E)[0]
        row = {"inbound_key": "web:t-lookup-1", "channel": "web", "query": "reset my password",
               "top_kb_id": hit.id, "top_slug": hit.slug, "score": hit.score, "answered": True}
        record_lookups(conn, [row, {**row, "inbound_key": "web:t-lookup-2", "answered": False}])
        record_lookups(conn, [row])  # a replay
        got = conn.execute("SELECT inbound_key, top_slug, answered FROM kb_lookups "
                           "WHERE inbound_key LIKE 'web:t-lookup-%' ORDER BY inbound_key").fetchall()
    assert got == [("web:t-lookup-1", "password-recovery", True), ("web:t-lookup-2", "password-recovery", False)]


def test_kb_load_keeps_an_article_edited_in_the_console(kb_database_url, tmp_path):
    src = tmp_path / "kb"
    src.mkdir()
    (src / "gift-cards.md").write_text("---\ntitle: Gift cards\nintents: [place_order]\n---\nValid two years.\n")
    with connect(kb_database_url) as conn, conn.transaction():
        load_directory(conn, src, embedder=E)
        save_article(conn, slug="gift-cards", title="Gift cards", body="Valid three years now.",
                     intents=["place_order"], source="console:ana", embedder=E)
        report = load_directory(conn, src, embedder=E)
        assert report.kept_edited == ["gift-cards"] and report.removed_articles == []
        body = conn.execute("SELECT body FROM knowledge_base WHERE slug = 'gift-cards'").fetchone()[0]
        assert body == "Valid three years now."
        load_directory(conn, src, embedder=E, overwrite_edited=True)
        body = conn.execute("SELECT body FROM knowledge_base WHERE slug = 'gift-cards'").fetchone()[0]
        assert body == "Valid two years."
        delete_article(conn, "gift-cards")
