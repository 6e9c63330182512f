"""Postgres 16 + pgvector from the `pgserver` wheel, on 127.0.0.1 over TCP and a socket.

pgserver ships the server binaries and pgvector; we drive `initdb`/`pg_ctl` ourselves so
the server listens on TCP (pgserver's own launcher allows only a Unix socket). When run as
root, the server runs as the unprivileged `pgserver` user, as Postgres requires.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import psycopg

from fte.logs import get_logger
from fte.settings import Settings
from fte.stack import ServiceStatus
from fte.stack.process import port_open, wait_until

log = get_logger(__name__)

SYSTEM_USER = "pgserver"
_MAX_SOCKET_PATH = 100  # sun_path is 108 bytes including ".s.PGSQL.<port>"


def _bin(name: str) -> str:
    from pgserver._commands import POSTGRES_BIN_PATH

    return str(POSTGRES_BIN_PATH / name)


class EmbeddedPostgres:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.home = settings.FTE_DATA_DIR / "postgres"
        self.data = self.home / "data"
        self.log_file = self.home / "postgres.log"
        self.port = settings.FTE_PG_PORT
        self.run_as = SYSTEM_USER if os.geteuid() == 0 else None

    @property
    def socket_dir(self) -> Path:
        if len(str(self.home / f".s.PGSQL.{self.port}")) < _MAX_SOCKET_PATH:
            return self.home
        return Path("/tmp") / f"fte-pg-{self.port}"

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(list(args), check=check, capture_output=True, text=True,
                              user=self.run_as, cwd="/")

    def _prepare_dirs(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        self.socket_dir.mkdir(parents=True, exist_ok=True)
        if self.run_as:
            from pgserver.utils import ensure_prefix_permissions, ensure_user_exists

            entry = ensure_user_exists(self.run_as)
            ensure_prefix_permissions(self.home)
            from pgserver._commands import POSTGRES_BIN_PATH

            ensure_prefix_permissions(POSTGRES_BIN_PATH)
            for path in (self.home, self.socket_dir):
                os.chown(path, entry.pw_uid, entry.pw_gid)
            if self.log_file.exists():
                os.chown(self.log_file, entry.pw_uid, entry.pw_gid)

    def _ensure_initialised(self) -> None:
        if (self.data / "PG_VERSION").exists():
            return
        log.info("postgres.initdb", dir=str(self.data))
        self._run(_bin("initdb"), "-D", str(self.data), "--auth=trust", "--encoding=UTF8",
                  "--locale=C", "-U", "postgres")
        conf = self.data / "postgresql.conf"
        with conf.open("a") as f:
            f.write(
                "\n# fte embedded settings\n"
                "shared_buffers = 128MB\n"
                "max_connections = 200\n"
                "synchronous_commit = on\n"
                "log_min_messages = warning\n"
            )

    def pid(self) -> int | None:
        pid_file = self.data / "postmaster.pid"
        if not pid_file.exists():
            return None
        try:
            pid = int(pid_file.read_text().splitlines()[0])
        except (OSError, ValueError, IndexError):
            return None
        from fte.stack.process import pid_alive

        return pid if pid_alive(pid) else None

    def start(self, timeout: float = 60.0) -> None:
        self._prepare_dirs()
        self._ensure_initialised()
        if self.pid() is None:
            if port_open("127.0.0.1", self.port):
                raise RuntimeError(f"port {self.port} is taken by another process (FTE_PG_PORT)")
            opts = f"-p {self.port} -h 127.0.0.1 -k {self.socket_dir}"
            log.info("postgres.starting", port=self.port)
            self._run(_bin("pg_ctl"), "-D", str(self.data), "-l", str(self.log_file),
                      "-o", opts, "-w", "-t", str(int(timeout)), "start")
        wait_until(self.ready, timeout, what="postgres to accept connections")
        self._ensure_database()

    def ready(self) -> bool:
        try:
            with psycopg.connect(self.admin_url, connect_timeout=2) as conn:
                conn.execute("SELECT 1")
            return True
        except psycopg.OperationalError:
            return False

    @property
    def admin_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _ensure_database(self) -> None:
        name = self.settings.FTE_PG_DATABASE
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
            if not exists:
                conn.execute(psycopg.sql.SQL("CREATE DATABASE {}").format(psycopg.sql.Identifier(name)))

    def stop(self, timeout: float = 60.0) -> None:
        if self.pid() is None:
            return
        log.info("postgres.stopping")
        self._run(_bin("pg_ctl"), "-D", str(self.data), "-m", "fast", "-w",
                  "-t", str(int(timeout)), "stop")


def status(settings: Settings) -> ServiceStatus:
    address = f"127.0.0.1:{settings.FTE_PG_PORT}" if settings.embedded_postgres else _safe(settings.database_url)
    if not settings.embedded_postgres:
        try:
            with psycopg.connect(settings.database_url, connect_timeout=3) as conn:
                conn.execute("SELECT 1")
            return ServiceStatus("postgres", True, address, embedded=False)
        except psycopg.OperationalError as exc:
            return ServiceStatus("postgres", False, address, embedded=False, detail=str(exc)[:200])
    pg = EmbeddedPostgres(settings)
    pid = pg.pid()
    up = pid is not None and pg.ready()
    detail = f"pid {pid}, socket {pg.socket_dir}" if pid else "not running"
    return ServiceStatus("postgres", up, address, embedded=True, detail=detail)


def _safe(url: str) -> str:
    """The URL without its password, for display."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{parts.username or ''}@{host}{port}{parts.path}"
