"""Fixtures for the support flow tests: the local channel APIs (Gmail + Twilio, served by the
sandbox app on an ephemeral port), `fte flow` as a real child process, the outbox
dispatcher, and helpers to publish inbound events and wait for their effects.

Imported by tests/flows/test_support_*.py (`from tests.flows.support_harness import *`).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx
import psycopg
import pytest
from psycopg.rows import dict_row
from testkit import ServerThread, wait_for

from schema.events import Channel, Identifier, IdentifierKind, InboundMessage

REPO = Path(__file__).resolve().parents[2]

__all__ = [
    "REPO",
    "FlowProcess",
    "channel_apis",
    "dispatcher",
    "event_relay",
    "flow_env",
    "inbound",
    "publish",
    "query",
    "sandbox_get",
    "wait_for",
    "whatsapp_sent",
]


@pytest.fixture(scope="module")
def channel_apis(settings):
    """Base URL of the sandbox app (Gmail + Twilio APIs) on 127.0.0.1:<ephemeral>."""
    from sandbox.app import create_app

    with ServerThread(create_app(settings), lifespan="off") as url:
        yield url


@pytest.fixture(scope="module")
def flow_env(kb_database_url, kafka_bootstrap, channel_apis, tmp_path_factory,
             routing_model) -> dict[str, str]:
    """Environment of a flow/dispatcher with its own topics, database and recovery dir."""
    from fte.kafka import ensure_topics

    prefix = f"t{uuid.uuid4().hex[:10]}."
    ensure_topics(kafka_bootstrap, prefix)
    return {
        "DATABASE_URL": kb_database_url, "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "TOPIC_PREFIX": prefix, "ENVIRONMENT": "test",
        "RECOVERY_DIR": str(tmp_path_factory.mktemp("recovery")), "RECOVERY_SNAPSHOT_S": "1",
        "GMAIL_DISCOVERY_URL": f"{channel_apis}/discovery/gmail/v1/rest",
        "TWILIO_API_BASE": channel_apis, "LOG_LEVEL": "WARNING",
        "FLOW_WORKERS": os.environ.get("FTE_TEST_FLOW_WORKERS", "2"),  # 4-partition topics: 1, 2 or 4
        "DISPATCH_BREAKER_RESET_S": "1", "DISPATCH_RETRY_BASE_S": "0.2", "DISPATCH_RETRY_MAX_S": "1",
        "DISPATCH_LEASE_S": "30", "DISPATCH_CLIENT_TIMEOUT_S": "10",  # a send ends inside its lease
        "FTE_DATA_DIR": str(routing_model[1]),  # the session's routing model (flows/routing.py)
    }


class FlowProcess:
    """`fte flow` (or any `fte` command) as a child process in its own process group."""

    def __init__(self, env: dict[str, str], argv: tuple[str, ...] = ("flow",), log: Path | None = None):
        self.env = {**os.environ, **env}
        self.argv = argv
        self.log = log
        self.proc: subprocess.Popen | None = None

    def start(self) -> FlowProcess:
        out = open(self.log, "ab") if self.log else subprocess.DEVNULL  # noqa: SIM115 -- child keeps it
        self.proc = subprocess.Popen([sys.executable, "-m", "fte.cli", *self.argv], env=self.env,
                                     cwd=REPO, stdout=out, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        return self

    def kill9(self) -> None:
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


def dispatcher(env: dict[str, str], *, sweep_s: float = 0.5):
    """The real dispatcher (build_dispatcher) configured like `fte dispatch` with `env`."""
    from fte.settings import Settings
    from sinks.dispatcher import build_dispatcher

    return build_dispatcher(Settings(**{k: v for k, v in env.items()}), sweep_s=sweep_s)


def event_relay(env: dict[str, str]):
    """The real event relay (as `fte relay` runs it) configured with `env`."""
    from fte.settings import Settings
    from sinks.event_relay import build_relay

    return build_relay(Settings(**{k: v for k, v in env.items()}), idle_s=0.3)


def inbound(channel: str, body: str, *, email: str | None = None, phone: str | None = None,
            subject: str | None = None, name: str | None = None, verified: bool | None = None,
            **extra) -> InboundMessage:
    # As the ingress marks them: a channel's own sender is proved (Twilio signature, DMARC),
    # what is typed into the web form is not (until confirmed by a code or link).
    proved = channel != "web" if verified is None else verified
    sender = []
    if email:
        sender.append(Identifier(kind=IdentifierKind.EMAIL, value=email, verified=proved))
    if phone:
        sender.append(Identifier(kind=IdentifierKind.PHONE, value=phone, verified=proved))
    cmid = extra.pop("channel_message_id", None) or uuid.uuid4().hex
    if channel == "web":
        extra.setdefault("ticket_id", f"T-{cmid}")
        cmid = extra["ticket_id"]
    if channel == "email":
        extra.setdefault("thread_id", f"thr-{cmid[:8]}")
        extra.setdefault("metadata", {"message_id_header": f"<{cmid}@mail.example>", "references": ""})
    return InboundMessage(channel=Channel(channel), channel_message_id=cmid, sender=sender,
                          sender_name=name, subject=subject, body=body,
                          received_at=datetime.now(UTC), **extra)


def publish(env: dict[str, str], messages: list[InboundMessage | tuple[str, bytes]]) -> None:
    """Produce to the channel topics like the ingress does (key = primary identity)."""
    from fte.kafka import idempotent_producer
    from schema.identity import identity_key, normalize

    producer = idempotent_producer(env["KAFKA_BOOTSTRAP_SERVERS"])
    prefix = env["TOPIC_PREFIX"]
    for m in messages:
        if isinstance(m, tuple):  # (channel, raw bytes): for invalid events
            producer.produce(f"{prefix}channel.{m[0]}.inbound", value=m[1], key=b"bad")
        else:
            key = identity_key(normalize(m.sender[0]))
            producer.produce(f"{prefix}channel.{m.channel.value}.inbound", value=m.to_bytes(),
                             key=key.encode())
        producer.poll(0)
    assert producer.flush(30) == 0


def query(database_url: str, sql: str, params=()) -> list[dict]:
    with psycopg.connect(database_url, row_factory=dict_row) as conn:
        return conn.execute(sql, params).fetchall()


def sandbox_get(base: str, path: str, **params) -> dict:
    # Generous: the Gmail sandbox decodes every sent MIME message per call (slow on a busy machine).
    return httpx.get(f"{base}{path}", params=params, timeout=60).json()


def whatsapp_sent(base: str, phone: str) -> list[dict]:
    return sandbox_get(base, "/_sandbox/twilio/sent", to=f"whatsapp:{phone}")["messages"]
