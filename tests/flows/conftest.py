"""Fixtures for the stage logic tests: a migrated database of their own with the demo
knowledge base loaded, and the OpenAI-compatible sandbox server on an ephemeral port."""

from __future__ import annotations

import fcntl
import os
import shutil
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from testkit import ServerThread, clone_database, drop_database

REPO = Path(__file__).resolve().parents[2]
KB_DEMO = REPO / "flows" / "kb_demo"


@pytest.fixture(scope="session")
def _kb_template(stack, _migrated_template):
    """The migrated database with the demo knowledge base loaded, once per session: the
    template each module's `kb_database_url` is copied from."""
    from flows.embeddings import HashingEmbedder
    from flows.knowledge import load_directory
    from schema.db import connect

    url = clone_database(stack, _migrated_template, prefix="kbtmpl")
    with connect(url) as conn, conn.transaction():  # a plain connection: none left open
        load_directory(conn, KB_DEMO, embedder=HashingEmbedder())
    yield urlsplit(url).path.lstrip("/")
    drop_database(stack, url)


@pytest.fixture(scope="module")
def kb_database_url(stack, _kb_template):
    """A migrated database with the demo knowledge base loaded, dropped after the module."""
    from schema.db import close_pools

    url = clone_database(stack, _kb_template, prefix="kb")
    yield url
    close_pools()
    drop_database(stack, url)


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
    """The routing model trained once per run (no CV: the command's figures are not under
    test here) and saved where `fte` finds it under a data dir of its own; yields
    (router, data_dir). Parallel workers share the one training: the first trains and saves
    it under the run's shared temporary directory, the others load that file."""
    from flows import routing
    from flows.routing_data import load_examples

    if not (SHARED_DATA / "bitext" / "bitext_dev.csv").exists():
        pytest.skip(f"training data not found under {SHARED_DATA}")
    run_dir = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        run_dir = run_dir.parent  # shared by every worker of this run
    trained = run_dir / "routing-model" / "routing.joblib"
    trained.parent.mkdir(parents=True, exist_ok=True)
    with open(trained.parent / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not trained.exists():
            router = routing.train(load_examples(SHARED_DATA, REPO / "flows" / "routing_examples.yaml"),
                                   cv_folds=0)
            routing.save(router, trained)
    data_dir = tmp_path_factory.mktemp("fte-data")
    installed = data_dir / "models" / "routing.joblib"
    installed.parent.mkdir()
    shutil.copy(trained, installed)
    return routing.load(installed), data_dir
