"""Small helpers shared by the test areas: serving an ASGI app, free ports, polling,
databases copied from a template."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable

import uuid
from urllib.parse import urlsplit, urlunsplit

import psycopg
import uvicorn


class ServerThread:
    """uvicorn serving an ASGI app on 127.0.0.1 (ephemeral port by default) in a daemon thread.

    `with ServerThread(app) as url:` yields the base URL once the server accepts connections.
    """

    def __init__(self, app, *, port: int = 0, lifespan: str = "on"):
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                                    log_level="warning", lifespan=lifespan))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("server did not start")
            time.sleep(0.02)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(15)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(check: Callable[[], object], timeout: float = 60.0, message: str = "condition",
             interval: float = 0.25):
    """Poll `check` until it returns something truthy (returned), or fail after `timeout`."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {message}; last: {last!r}")


# Operator API keys the ingress tests configure (OPERATOR_API_KEYS), one per role.
OPERATOR_KEYS = {"admin": "fte_op_test-admin-key", "agent": "fte_op_test-agent-key",
                 "viewer": "fte_op_test-viewer-key"}


def _admin(stack) -> str:
    return urlunsplit(urlsplit(stack.database_url)._replace(path="/postgres"))


def clone_database(stack, template: str, prefix: str = "t") -> str:
    """URL of a new database copied from `template` (which must have no open connections)."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(_admin(stack), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    return urlunsplit(urlsplit(stack.database_url)._replace(path=f"/{name}"))


def drop_database(stack, url: str) -> None:
    name = urlsplit(url).path.lstrip("/")
    with psycopg.connect(_admin(stack), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def email_identifier(value: str, verified: bool = True):
    from schema.events import Identifier, IdentifierKind

    return Identifier(kind=IdentifierKind.EMAIL, value=value, verified=verified)


def phone_identifier(value: str, verified: bool = True):
    from schema.events import Identifier, IdentifierKind

    return Identifier(kind=IdentifierKind.PHONE, value=value, verified=verified)
