"""One flow instance per recovery store; an unresumable store is reported and rebuilt.

Real `fte metrics-flow` processes against the real Kafka and Postgres.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from testkit import wait_for

from fte.dataflow_runner import EXIT_STORE_IN_USE, EXIT_STORE_UNRESUMABLE
from fte.kafka import ensure_topics, idempotent_producer
from fte.recovery_store import LOCK_NAME, StoreInUse, StoreLock
from schema.events import Channel, SupportEvent, SupportEventKind
from schema.migrate import migrate
from schema.topics import SUPPORT_EVENTS, topic_name

REPO = Path(__file__).resolve().parents[2]


def _with_database(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


@pytest.fixture(scope="module")
def flow_env(stack):
    name = f"t_recovery_{uuid.uuid4().hex[:8]}"
    admin = _with_database(stack.database_url, "postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    database_url = _with_database(stack.database_url, name)
    migrate(database_url)
    prefix = f"t{uuid.uuid4().hex[:10]}."
    ensure_topics(stack.kafka_bootstrap, prefix)
    yield {**os.environ, "DATABASE_URL": database_url, "KAFKA_BOOTSTRAP_SERVERS": stack.kafka_bootstrap,
           "TOPIC_PREFIX": prefix, "RECOVERY_SNAPSHOT_S": "1", "LOG_LEVEL": "WARNING"}
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def fte(*argv: str, env: dict, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "fte.cli", *argv], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


def holder_pid(store: Path) -> str:
    try:
        return (store / LOCK_NAME).read_text().strip()
    except OSError:
        return ""


def received_counted(env: dict, key: str) -> bool:
    with psycopg.connect(env["DATABASE_URL"], autocommit=True) as conn:
        return conn.execute("SELECT count(*) FROM metric_windows WHERE contributions ? %s",
                            (f"received:{key}",)).fetchone()[0] > 0


def produce_received(env: dict, key: str) -> None:
    event = SupportEvent(kind=SupportEventKind.RECEIVED, channel=Channel.WEB, inbound_key=key,
                         occurred_at=datetime(2026, 1, 1, tzinfo=UTC))  # late: merged at once
    producer = idempotent_producer(env["KAFKA_BOOTSTRAP_SERVERS"])
    producer.produce(topic_name(SUPPORT_EVENTS, env["TOPIC_PREFIX"]), value=event.to_bytes(), key=key.encode())
    assert producer.flush(15) == 0


def test_store_lock_refuses_a_second_holder(tmp_path):
    with StoreLock(tmp_path):
        with pytest.raises(StoreInUse, match=f"pid {os.getpid()}"):
            StoreLock(tmp_path).acquire()
    StoreLock(tmp_path).acquire().release()  # released with its holder


def test_second_instance_refuses_the_store_and_an_unresumable_store_is_rebuilt(flow_env, tmp_path):
    store = tmp_path / "metrics"
    first = fte("metrics-flow", "--recovery-dir", str(store), env=flow_env)
    try:
        wait_for(lambda: holder_pid(store) == str(first.pid), 60, "the first flow to hold its store")
        produce_received(flow_env, "web:before")
        wait_for(lambda: received_counted(flow_env, "web:before"), 90, "the first flow to count an event")

        second = fte("metrics-flow", "--recovery-dir", str(store), env=flow_env)
        _out, err = second.communicate(timeout=120)
        assert second.returncode == EXIT_STORE_IN_USE
        assert f"in use by another process (pid {first.pid})" in err and "Traceback" not in err
        assert first.poll() is None  # the running one is untouched

        reset = fte("recovery", "reset", "metrics", "--recovery-dir", str(store), env=flow_env)
        _out, err = reset.communicate(timeout=60)
        assert reset.returncode == 3 and "stop `fte metrics-flow`" in err
    finally:
        first.send_signal(signal.SIGTERM)
        _out, err = first.communicate(timeout=60)
    assert first.returncode == 0 and "Traceback" not in err  # a graceful stop

    # What two writers leave behind: a partition committed past the resumable epoch.
    with sqlite3.connect(next(store.glob("part-*.sqlite3"))) as db:
        db.execute("UPDATE commits SET commit_epoch = commit_epoch + 1000")
    broken = fte("metrics-flow", "--recovery-dir", str(store), env=flow_env)
    _out, err = broken.communicate(timeout=120)
    assert broken.returncode == EXIT_STORE_UNRESUMABLE
    assert "cannot be resumed (InconsistentPartitionsError" in err
    assert "fte recovery reset metrics" in err and "Traceback" not in err

    reset = fte("recovery", "reset", "metrics", "--recovery-dir", str(store), env=flow_env)
    out, _err = reset.communicate(timeout=60)
    assert reset.returncode == 0 and "replaced by an empty store" in out

    # The rebuilt store re-reads the topic from its start: nothing written before is lost or doubled.
    produce_received(flow_env, "web:after")
    again = fte("metrics-flow", "--recovery-dir", str(store), env=flow_env)
    try:
        wait_for(lambda: received_counted(flow_env, "web:after"), 120, "the rebuilt flow to count")
        with psycopg.connect(flow_env["DATABASE_URL"], autocommit=True) as conn:
            received = conn.execute("SELECT sum(received) FROM metric_windows").fetchone()[0]
        assert received == 2
    finally:
        again.send_signal(signal.SIGINT)
        _out, err = again.communicate(timeout=60)
    assert again.returncode == 0 and "Traceback" not in err
