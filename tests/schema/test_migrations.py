import numpy as np
import psycopg

from schema.db import connect
from schema.migrate import discover, migrate

SCHEMA_SNAPSHOT = """
SELECT 'col' AS k, table_name || '.' || column_name || ':' || data_type || ':' || is_nullable
  FROM information_schema.columns WHERE table_schema = 'public'
UNION ALL
SELECT 'idx', indexname || ':' || indexdef FROM pg_indexes WHERE schemaname = 'public'
UNION ALL
SELECT 'con', conname || ':' || pg_get_constraintdef(oid) FROM pg_constraint
 WHERE connamespace = 'public'::regnamespace
ORDER BY 1, 2
"""


def _snapshot(url: str) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute(SCHEMA_SNAPSHOT).fetchall()


def test_migrations_applied_twice_give_the_same_schema(fresh_database):
    first = migrate(fresh_database)
    after_first = _snapshot(fresh_database)
    second = migrate(fresh_database)

    assert [m.version for m in first] == [m.version for m in discover()]
    assert second == []
    assert _snapshot(fresh_database) == after_first
    tables = {row[1].split(".")[0] for row in after_first if row[0] == "col"}
    for table in ("customers", "customer_identifiers", "conversations", "messages", "tickets",
                  "knowledge_base", "escalations", "reply_outbox", "channel_cursors",
                  "metric_windows", "sla_events", "dead_letters", "schema_migrations"):
        assert table in tables


def test_messages_are_unique_per_channel_message_id(fresh_database):
    migrate(fresh_database)
    insert = """INSERT INTO messages (channel, channel_message_id, direction, author, body, occurred_at)
                VALUES ('whatsapp', 'SM1', 'inbound', 'customer', 'hi', now())
                ON CONFLICT (channel, channel_message_id) DO NOTHING"""
    with psycopg.connect(fresh_database) as conn:
        assert conn.execute(insert).rowcount == 1
        assert conn.execute(insert).rowcount == 0
        assert conn.execute("SELECT count(*) FROM messages").fetchone()[0] == 1


def test_pgvector_nearest_neighbour_returns_the_closest_article(fresh_database):
    migrate(fresh_database)
    rng = np.random.default_rng(7)
    vectors = {f"article-{i}": rng.normal(size=384).astype(np.float32) for i in range(50)}
    with connect(fresh_database) as conn:
        with conn.cursor() as cur:
            cur.executemany(
                """INSERT INTO knowledge_base (slug, title, body, content_hash, embedding)
                   VALUES (%s, %s, %s, %s, %s)""",
                [(slug, slug, f"body of {slug}", slug, vec) for slug, vec in vectors.items()],
            )
        target = vectors["article-17"] + rng.normal(scale=0.05, size=384).astype(np.float32)
        conn.execute("SET hnsw.ef_search = 40")
        rows = conn.execute(
            "SELECT slug FROM knowledge_base ORDER BY embedding <=> %s LIMIT 3", (target,)
        ).fetchall()
    assert rows[0][0] == "article-17"
