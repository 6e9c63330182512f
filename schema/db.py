"""Postgres connections: one pool per process, pgvector types registered on each."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from pgvector.psycopg import register_vector
from psycopg.rows import dict_row, tuple_row
from psycopg_pool import ConnectionPool

_pools: dict[str, ConnectionPool] = {}
_lock = threading.Lock()


def _configure(conn: psycopg.Connection) -> None:
    register_vector(conn)


def connect(database_url: str, **kwargs) -> psycopg.Connection:
    """A single connection (scripts, tests); pgvector registered."""
    conn = psycopg.connect(database_url, **kwargs)
    _configure(conn)
    return conn


def pool(database_url: str, *, max_size: int = 8) -> ConnectionPool:
    with _lock:
        existing = _pools.get(database_url)
        if existing is None:
            existing = ConnectionPool(
                database_url,
                min_size=1,
                max_size=max_size,
                configure=_configure,
                kwargs={"row_factory": dict_row},
                open=True,
                name="fte",
            )
            _pools[database_url] = existing
        return existing


@contextmanager
def transaction(database_url: str) -> Iterator[psycopg.Connection]:
    """A pooled connection inside one transaction, rows as dicts."""
    with pool(database_url).connection() as conn, conn.transaction():
        yield conn


@contextmanager
def pooled(database_url: str) -> Iterator[psycopg.Connection]:
    """A pooled connection with tuple rows (the pool's dict rows are restored on return)."""
    with pool(database_url).connection() as conn:
        conn.row_factory = tuple_row
        try:
            yield conn
        finally:
            conn.row_factory = dict_row


def close_pools() -> None:
    with _lock:
        for p in _pools.values():
            p.close()
        _pools.clear()
