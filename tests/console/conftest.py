"""Console fixtures: a migrated database of its own, seeded with a small support day, and
the console's settings pointed at it (and at a topic set of its own)."""

from __future__ import annotations

import uuid
from pathlib import Path

import psycopg
import pytest
import streamlit as st
from console_apptest import DEV_PASSWORD, REPO
from testkit import clone_database, drop_database

from fte.kafka import ensure_topics
from fte.settings import get_settings
from schema.topics import WHATSAPP_INBOUND, topic_name

SEED = Path(__file__).with_name("seed.sql")
APP = str(REPO / "console" / "app.py")


@pytest.fixture
def console_env(stack, kafka_bootstrap, _migrated_template, monkeypatch, tmp_path):
    """A migrated (copied from the session's template), seeded database and topic set; the
    console's settings point at them."""
    url = clone_database(stack, _migrated_template, prefix="console")
    prefix = f"c{uuid.uuid4().hex[:8]}."
    ensure_topics(kafka_bootstrap, prefix)
    inbound = topic_name(WHATSAPP_INBOUND, prefix)
    with psycopg.connect(url) as conn:
        conn.execute(SEED.read_text())
        conn.execute(
            """INSERT INTO dead_letters (source_topic, partition, "offset", msg_key, raw, reason, created_at)
               VALUES (%s, 0, 17, %s, %s, 'body: String should have at least 1 character', now() - interval '15 minutes'),
                      (%s, 1, 3, NULL, %s, 'UnicodeDecodeError: invalid start byte', now() - interval '5 minutes')""",
            (inbound, b"phone:+15550100999", b'{"channel": "whatsapp", "body": ""}', inbound, b"\xde\xad\xbe\xef"),
        )
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", kafka_bootstrap)
    monkeypatch.setenv("TOPIC_PREFIX", prefix)
    monkeypatch.setenv("CONSOLE_DEV_PASSWORD", DEV_PASSWORD)
    monkeypatch.setenv("FTE_DATA_DIR", str(tmp_path))  # no dev-password file from elsewhere
    get_settings.cache_clear()
    st.cache_data.clear()
    yield {"database_url": url, "topic_prefix": prefix, "inbound_topic": inbound,
           "kafka_bootstrap": kafka_bootstrap}
    get_settings.cache_clear()
    st.cache_data.clear()
    drop_database(stack, url)


@pytest.fixture
def db(console_env):
    with psycopg.connect(console_env["database_url"], autocommit=True) as conn:
        yield conn
