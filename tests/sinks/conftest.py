"""Fixtures for the sink tests: a migrated database of their own and the sandbox channel
APIs (Gmail + Twilio) on an ephemeral port."""

from __future__ import annotations

import threading
import time

import pytest

from schema.migrate import migrate


@pytest.fixture
def migrated_db(fresh_database) -> str:
    migrate(fresh_database)
    return fresh_database


@pytest.fixture(scope="module")
def channel_api_server(settings):
    import uvicorn

    from loadtests.sandbox.app import create_app

    server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=0,
                                           log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not (server.started and server.servers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started
    yield f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    server.should_exit = True
    thread.join(timeout=5)
