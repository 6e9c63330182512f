"""Fixtures for the sink tests: a migrated database of their own and the sandbox channel
APIs (Gmail + Twilio) on an ephemeral port."""

from __future__ import annotations

import pytest
from testkit import ServerThread

from schema.migrate import migrate


@pytest.fixture
def migrated_db(fresh_database) -> str:
    migrate(fresh_database)
    return fresh_database


@pytest.fixture(scope="module")
def channel_api_server(settings):
    from sandbox.app import create_app

    with ServerThread(create_app(settings), lifespan="off") as url:
        yield url
