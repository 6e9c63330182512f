"""Fixtures for the stage logic tests: a migrated database of their own with the demo
knowledge base loaded, and the OpenAI-compatible sandbox server on an ephemeral port."""

from __future__ import annotations

import uuid
from pathlib import Path

import psycopg
import pytest
from testkit import ServerThread

REPO = Path(__file__).resolve().parents[2]
KB_DEMO = REPO / "flows" / "kb_demo"


@pytest.fixture(scope="module")
def kb_database_url(stack):
    """A migrated database with the demo knowledge base loaded, dropped after the module."""
    from urllib.parse import urlsplit, urlunsplit

    from flows.embeddings import HashingEmbedder
    from flows.knowledge import load_directory
    from schema.db import connect
    from schema.migrate import migrate

    name = f"kb_{uuid.uuid4().hex[:10]}"
    parts = urlsplit(stack.database_url)
    admin = urlunsplit(parts._replace(path="/postgres"))
    url = urlunsplit(parts._replace(path=f"/{name}"))
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    migrate(url)
    with connect(url) as conn, conn.transaction():
        load_directory(conn, KB_DEMO, embedder=HashingEmbedder())
    yield url
    from schema.db import close_pools

    close_pools()
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="module")
def openai_sandbox():
    """The sandbox OpenAI router served by uvicorn on 127.0.0.1:<ephemeral>; yields base URL."""
    from sandbox.openai import create_app, state

    with ServerThread(create_app(), lifespan="off") as url:
        state.reset()
        yield url


@pytest.fixture
def sandbox_state(openai_sandbox):
    from sandbox.openai import state

    state.reset()
    yield state
    state.reset()


SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def routing_model(tmp_path_factory):
    """The routing model trained once per session (no CV: the command's figures are not under
    test here) and saved where `fte` finds it under a data dir of its own; yields
    (router, data_dir)."""
    from flows import routing
    from flows.routing_data import load_examples

    if not (SHARED_DATA / "bitext" / "bitext_dev.csv").exists():
        pytest.skip(f"training data not found under {SHARED_DATA}")
    data_dir = tmp_path_factory.mktemp("fte-data")
    router = routing.train(load_examples(SHARED_DATA, REPO / "flows" / "routing_examples.yaml"),
                           cv_folds=0)
    routing.save(router, data_dir / "models" / "routing.joblib")
    return router, data_dir
