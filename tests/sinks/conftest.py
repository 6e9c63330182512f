"""Fixtures for the sink tests: `migrated_db` (a migrated database of their own) and
`channel_api_server` (the sandbox Gmail + Twilio APIs on an ephemeral port) come from
tests/conftest.py, shared with tests/ops."""

import psycopg
import pytest


@pytest.fixture
def conn(migrated_db):
    """An autocommit connection to the test's own migrated database (a test module may
    override it with one that seeds rows)."""
    with psycopg.connect(migrated_db, autocommit=True) as c:
        yield c
