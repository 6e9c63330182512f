"""Session fixtures: the real Kafka and Postgres, started by the same code as `fte stack up`.

Tests use their own data directory and ports so a developer's running stack is untouched.
Set KAFKA_BOOTSTRAP_SERVERS / DATABASE_URL to run the suite against external services
(then run it in one process, `-n 0`: parallel workers would share them).

Under pytest-xdist (`make test` runs `-n 2`) each worker after the first has a stack of its
own: data directory FTE_DATA_DIR-gwN and the three ports shifted by 20000 + 1000*(N-1)
(29092 -> 49092 for gw1), so workers share no broker, database, consumer group or restart.
"""

from __future__ import annotations

import fcntl
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
BASE_DATA_DIR = Path(os.environ["FTE_DATA_DIR"])
WORKER = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
if WORKER:
    os.environ["FTE_DATA_DIR"] = f"{BASE_DATA_DIR}-gw{WORKER}"
    for _var in ("FTE_KAFKA_PORT", "FTE_KAFKA_CONTROLLER_PORT", "FTE_PG_PORT"):
        _port = int(os.environ[_var]) + 20000 + 1000 * (WORKER - 1)
        if _port > 65535:
            raise RuntimeError(f"{_var} of worker gw{WORKER} would be {_port}: use fewer workers")
        os.environ[_var] = str(_port)

import psycopg

from fte import stack as fte_stack
from fte.settings import Settings
from schema.migrate import migrate
from testkit import ServerThread, clone_database, drop_database


@pytest.fixture(scope="session")
def settings() -> Settings:
    return Settings()


@pytest.fixture(scope="session")
def stack(settings: Settings):
    """The stack, up and migrated; stopped afterwards if this session started it (unless
    FTE_KEEP_TEST_STACK=1), so a later run or clone finds its ports free."""
    already_up = {s.name for s in fte_stack.status(settings) if s.up and s.embedded}
    if settings.embedded_kafka:
        _share_kafka_jars(settings)
    try:
        fte_stack.up(settings)
    except RuntimeError as exc:
        if "is taken by another process" not in str(exc):
            raise
        pytest.exit(f"{exc}: a test stack kept up by an earlier run elsewhere "
                    "(FTE_KEEP_TEST_STACK=1)? Stop it with `FTE_DATA_DIR=<its dir> fte stack down`, "
                    "or set other FTE_KAFKA_PORT/FTE_KAFKA_CONTROLLER_PORT/FTE_PG_PORT.", returncode=4)
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


@pytest.fixture(scope="session")
def _migrated_template(stack: Settings):
    """A database migrated once per session, the template of every `migrated_db`: cloning
    it (CREATE DATABASE ... TEMPLATE) gives the same schema as migrating, in a fraction."""
    name = f"tmpl_{uuid.uuid4().hex[:12]}"
    admin = _with_database(stack.database_url, "postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    migrate(_with_database(stack.database_url, name))
    yield name
    drop_database(stack, _with_database(stack.database_url, name))


@pytest.fixture
def migrated_db(stack: Settings, _migrated_template: str):
    """A migrated database of its own (a copy of the session's template), dropped afterwards."""
    url = clone_database(stack, _migrated_template)
    yield url
    drop_database(stack, url)


@pytest.fixture(scope="module")
def channel_api_server(settings: Settings):
    """The sandbox app (Gmail + Twilio APIs) on 127.0.0.1:<ephemeral>; yields the base URL."""
    from sandbox.app import create_app

    with ServerThread(create_app(settings), lifespan="off") as url:
        yield url


@pytest.fixture
def topic_prefix() -> str:
    """A unique topic prefix per test, so tests never read each other's messages."""
    return f"t{uuid.uuid4().hex[:10]}."


def _share_kafka_jars(settings: Settings) -> None:
    """Workers' stacks use the Kafka jars resolved once under the base data directory (one
    Maven run per clone, not one per worker); a lock makes the first worker resolve them."""
    from fte.stack.kafka import EmbeddedKafka

    base = EmbeddedKafka(settings.model_copy(update={"FTE_DATA_DIR": BASE_DATA_DIR}))
    libs = EmbeddedKafka(settings).libs
    BASE_DATA_DIR.mkdir(parents=True, exist_ok=True)
    with open(BASE_DATA_DIR / ".kafka-jars.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        base.ensure_jars()
    if libs != base.libs and not libs.is_symlink() and not libs.exists():
        libs.parent.mkdir(parents=True, exist_ok=True)
        libs.symlink_to(base.libs)


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
