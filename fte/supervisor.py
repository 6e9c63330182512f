"""`fte up`'s process supervisor: restart with exponential back-off, alert on a crash loop.

A service that exits with an error is restarted after `backoff_s` (1 s, 2 s, 4 s... up to
60 s, by how many times it exited in the last 10 minutes), never blocking the others. Three
restarts of one service within 10 minutes is a crash loop (the seed's rule): each restart
while it lasts raises a `crash_loop` alert, written like every other alert to the `alerts`
table (one row per kind and minute, services merged into `detail.subjects`) and to
`support.alerts`. A service that exits 0 is done (nothing to do here) and is not restarted.
SIGINT/SIGTERM stop every child with SIGTERM and wait for it (SIGKILL after 30 s).
`Supervisor` is the loop's step on its own, so the chaos harness (loadtests/chaos.py)
supervises its services exactly as `fte up` does; `Supervisor.held` keeps a service out of
the supervisor's hands while the harness kills and restarts it on purpose.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from flows.alerts import minute_bucket
from fte.logs import get_logger
from schema.events import Alert

log = get_logger(__name__)

# What an exit code says, for the alert and the log (see fte/dataflow_runner.py).
EXIT_HINTS = {
    3: "its recovery store is held by another instance: stop the stray one",
    4: "its recovery store cannot be resumed: run `fte recovery reset NAME`",
}


@dataclass(frozen=True)
class RestartPolicy:
    base_s: float = 1.0
    max_s: float = 60.0
    window_s: float = 600.0
    crash_loop_restarts: int = 3

    def backoff_s(self, recent_exits: int) -> float:
        """Delay before the next start, given the exits in the window (this one included)."""
        return min(self.max_s, self.base_s * 2 ** max(0, recent_exits - 1))

    def crash_loop(self, recent_exits: int) -> bool:
        return recent_exits >= self.crash_loop_restarts


@dataclass
class Service:
    name: str
    argv: list[str]
    proc: subprocess.Popen | None = None
    exits: deque = field(default_factory=deque)  # monotonic times of error exits
    restart_at: float | None = None
    last_code: int | None = None
    done: bool = False
    env: dict | None = None
    log_path: Path | None = None  # stdout and stderr appended here (default: inherited)
    held: bool = False  # stopped or restarted by someone else for now (the chaos harness)
    starts: int = 0

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def recent_exits(self, now: float, window_s: float) -> int:
        while self.exits and now - self.exits[0] > window_s:
            self.exits.popleft()
        return len(self.exits)


def crash_loop_alert(service: Service, restarts: int, policy: RestartPolicy, now: datetime) -> Alert:
    name = service.argv[0] if service.argv else service.name
    hint = EXIT_HINTS.get(service.last_code, "see the service's log")
    return Alert(kind="crash_loop", value=float(restarts), threshold=float(policy.crash_loop_restarts),
                 raised_at=now,
                 detail={"bucket": minute_bucket(now).isoformat(), "subject": service.name,
                         "exit_code": service.last_code, "window_s": policy.window_s,
                         "hint": hint.replace("NAME", _store_name(name))})


def _store_name(command: str) -> str:
    return {"metrics-flow": "metrics", "flow": "support"}.get(command, command)


def raise_alert(settings, alert: Alert) -> None:
    """To the alerts table and support.alerts, like the metrics flow's alerts (best effort)."""
    import psycopg

    from fte.kafka import idempotent_producer
    from schema.topics import ALERTS, topic_name
    from sinks.metrics_store import write_alerts

    try:
        with psycopg.connect(settings.database_url, connect_timeout=5) as conn:
            write_alerts(conn, [alert])
    except psycopg.Error as exc:
        log.warning("supervisor.alert_not_stored", error=str(exc))
    try:
        producer = idempotent_producer(settings.kafka_bootstrap)
        producer.produce(topic_name(ALERTS, settings.TOPIC_PREFIX), key=alert.kind.encode(),
                         value=alert.to_bytes())
        if producer.flush(10):
            log.warning("supervisor.alert_not_published", kind=alert.kind)
    except Exception as exc:  # noqa: BLE001 -- an unreachable broker must not stop the supervisor
        log.warning("supervisor.alert_not_published", error=str(exc))


def start(service: Service, env: dict | None = None) -> None:
    env = env if env is not None else service.env
    if service.log_path is not None:
        with service.log_path.open("ab") as sink:
            service.proc = subprocess.Popen([sys.executable, "-m", "fte.cli", *service.argv], env=env,
                                            stdout=sink, stderr=subprocess.STDOUT)
    else:
        service.proc = subprocess.Popen([sys.executable, "-m", "fte.cli", *service.argv], env=env)
    service.restart_at = None
    service.starts += 1
    print(f"started {service.name} (pid {service.proc.pid}): fte {' '.join(service.argv)}", flush=True)


class Supervisor:
    """Restart with back-off and crash-loop alerts; `tick` is one pass over the services."""

    def __init__(self, services: list[Service], alert: Callable[[Alert], None],
                 policy: RestartPolicy = RestartPolicy()):
        self.services = {s.name: s for s in services}
        self.alert, self.policy = alert, policy
        self.restarts: dict[str, int] = {}  # restarts after an exit of its own, per service
        self._lock = threading.Lock()

    def start_all(self) -> None:
        with self._lock:
            for service in self.services.values():
                start(service)

    def tick(self, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        with self._lock:
            for service in self.services.values():
                if not (service.done or service.held):
                    self._check(service, now)

    def _check(self, service: Service, now: float) -> None:
        policy = self.policy
        if service.restart_at is not None:
            if now >= service.restart_at:
                start(service)
                self.restarts[service.name] = self.restarts.get(service.name, 0) + 1
            return
        code = service.proc.poll()
        if code is None:
            return
        if code == 0:  # a service with nothing to do here (e.g. demo traffic in production)
            log.info("service.finished", service=service.name)
            service.done = True
            return
        service.last_code = code
        service.exits.append(now)
        recent = service.recent_exits(now, policy.window_s)
        delay = policy.backoff_s(recent)
        service.restart_at = now + delay
        log.warning("service.exited", service=service.name, code=code, restart_in_s=delay,
                    exits_in_window=recent, hint=EXIT_HINTS.get(code))
        if policy.crash_loop(recent):
            log.error("service.crash_loop", service=service.name, exits_in_window=recent)
            self.alert(crash_loop_alert(service, recent, policy, datetime.now(UTC)))

    @contextmanager
    def held(self, name: str) -> Iterator[Service]:
        """The service is left alone inside; afterwards it runs again (started if it is down)."""
        service = self.services[name]
        with self._lock:
            service.held = True
        try:
            yield service
        finally:
            with self._lock:
                service.held = False
                service.restart_at = None
                if not service.alive():
                    start(service)

    def stop_all(self, timeout_s: float = 30.0) -> None:
        with self._lock:
            for service in self.services.values():
                service.held = True  # no restarts from here on
            stop_all([s.proc for s in self.services.values() if s.proc is not None], timeout_s)


def supervise(services: list[tuple[str, list[str]]], settings, *, policy: RestartPolicy = RestartPolicy(),
              on_alert: Callable[[Alert], None] | None = None, env: dict | None = None,
              tick_s: float = 0.5) -> int:
    """Run each service until SIGINT/SIGTERM; restart one that fails, with back-off."""
    stopping = False

    def stop(*_):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    supervisor = Supervisor([Service(name, argv, env=env) for name, argv in services],
                            on_alert or (lambda a: raise_alert(settings, a)), policy)
    supervisor.start_all()
    while not stopping:
        time.sleep(tick_s)
        supervisor.tick()
    supervisor.stop_all()
    return 0


def stop_all(procs: list[subprocess.Popen], timeout_s: float = 30.0) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    deadline = time.monotonic() + timeout_s
    for proc in procs:
        try:
            proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
