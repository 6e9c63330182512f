"""Session fixtures: the real Kafka and Postgres, started by the same code as `fte stack up`.

Tests use their own data directory and ports so a developer's running stack is untouched.
Set KAFKA_BOOTSTRAP_SERVERS / DATABASE_URL to run the suite against external services.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
os.environ.setdefault("FTE_DATA_DIR", str(REPO / ".fte" / "test"))
os.environ.setdefault("FTE_KAFKA_PORT", "29092")
os.environ.setdefault("FTE_KAFKA_CONTROLLER_PORT", "29093")
os.environ.setdefault("FTE_PG_PORT", "25432")
os.environ.setdefault("ENVIRONMENT", "test")
os.environ.setdefault("XDG_RUNTIME_DIR", "/tmp")

import psycopg

from fte import stack as fte_stack
from fte.settings import Settings
from schema.migrate import migrate


@pytest.fixture(scope="session")
def settings() -> Settings:
    return Settings()


@pytest.fixture(scope="session")
def stack(settings: Settings):
    """The stack, up and migrated; stopped afterwards if this session started it."""
    already_up = {s.name for s in fte_stack.status(settings) if s.up and s.embedded}
    fte_stack.up(settings)
    migrate(settings.database_url)
    yield settings
    if not already_up and os.environ.get("FTE_KEEP_TEST_STACK") != "1":
        fte_stack.down(settings)


@pytest.fixture(scope="session")
def kafka_bootstrap(stack: Settings) -> str:
    return stack.kafka_bootstrap


@pytest.fixture(scope="session")
def database_url(stack: Settings) -> str:
    """The migrated shared database."""
    return stack.database_url


@pytest.fixture
def fresh_database(stack: Settings):
    """An empty database of its own (not migrated), dropped afterwards."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = _with_database(stack.database_url, "postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield _with_database(stack.database_url, name)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def topic_prefix() -> str:
    """A unique topic prefix per test, so tests never read each other's messages."""
    return f"t{uuid.uuid4().hex[:10]}."


def _with_database(url: str, name: str) -> str:
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


def pytest_unconfigure(config):
    """After the summary: Kafka clients still alive in module globals would log reconnect
    attempts to the broker this session stopped, burying the summary line; mute them at
    exit (pytest restores its own capture of fds 1 and 2 after this hook)."""
    import atexit
    import sys

    def mute() -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)

    atexit.register(mute)
