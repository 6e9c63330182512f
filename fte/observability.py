"""Per-service Prometheus exporter, liveness heartbeat and readiness.

Every long-running `fte` service calls `serve(name, settings)` once: it starts a small HTTP
server on the service's own port with

- `/metrics`  Prometheus text (prometheus-client's default registry, so Bytewax's own
  `bytewax_kafka_consumer_lag` is included in the flows);
- `/livez`    200 while the work loop beat within HEARTBEAT_MAX_AGE_S, else 503 — the loop
  calls `beat()` once per turn, so a hung loop (not just a dead process) fails liveness;
- `/readyz`   200 once the service declared itself ready (`ready()`) and is still live.

The metric objects below are module-level (one registry per process); services record into
them with a few calls at the right places.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from datetime import timedelta
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client import REGISTRY, Counter, Gauge, Histogram, make_wsgi_app
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import ThreadingWSGIServer

from fte.logs import get_logger

log = get_logger(__name__)

# Default exporter port per service (METRICS_PORT overrides it for one process).
DEFAULT_PORTS = {
    "ingress": 8000,  # the ingress serves /metrics on its API port
    "support-flow": 9101,
    "metrics-flow": 9102,
    "dispatcher": 9103,
    "console": 9104,
    "notify": 9105,
    "relay": 9106,
}

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
SIZE_BUCKETS = (1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500)

MESSAGES_IN = Counter("fte_messages_in_total", "Messages taken in, per channel", ["service", "channel"])
MESSAGES_OUT = Counter("fte_messages_out_total", "Messages/events put out, per channel and kind",
                       ["service", "channel", "kind"])
BATCH_SIZE = Histogram("fte_batch_size", "Items per batch, per stage", ["service", "stage"],
                       buckets=SIZE_BUCKETS)
STAGE_SECONDS = Histogram("fte_stage_seconds", "Time spent in a stage per call (a batch)",
                          ["service", "stage"], buckets=LATENCY_BUCKETS)
SENDS = Counter("fte_sends_total", "Channel sends, per channel and outcome", ["channel", "outcome"])
BREAKER_OPEN = Gauge("fte_breaker_open", "1 while the channel's circuit breaker is open", ["channel"])
AGENT_SECONDS = Histogram("fte_agent_seconds", "Agent/model latency per message",
                          ["model"], buckets=LATENCY_BUCKETS)
AGENT_CONFIDENCE = Histogram("fte_agent_confidence", "Agent answer confidence", ["model"],
                             buckets=(0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0))
NOTIFICATIONS = Counter("fte_notifications_total", "Notifications, per target and outcome",
                        ["target", "outcome"])
NOTIFY_DELAY = Histogram("fte_notification_delay_seconds", "Event time to notification sent",
                         ["source"], buckets=(1, 2, 5, 10, 20, 30, 60, 120, 300))
RELAYED = Counter("fte_relayed_events_total", "Event-outbox events published to Kafka", ["topic"])
ALERTS_RAISED = Counter("fte_alerts_total", "Alerts seen, per kind", ["kind"])
HEARTBEAT_AGE = Gauge("fte_heartbeat_age_seconds", "Seconds since the work loop last beat", ["service"])
UP_SINCE = Gauge("fte_process_start_time_seconds", "When this service process started", ["service"])


class Health:
    """Heartbeats and readiness of one process's work loops.

    Each loop (a dispatcher channel thread, a Bytewax worker) beats under its own name;
    the process is live only while every loop that ever beat did so within `max_age_s`.
    """

    def __init__(self, service: str, max_age_s: float = 60.0, clock: Callable[[], float] = time.monotonic):
        self.service = service
        self.max_age_s = max_age_s
        self._clock = clock
        self._beats: dict[str, float] = {}
        self._ready = False

    def beat(self, loop: str = "main") -> None:
        self._beats[loop] = self._clock()

    def set_ready(self, ready: bool = True, loop: str = "main") -> None:
        self._ready = ready
        if ready:
            self.beat(loop)

    def age(self) -> float | None:
        """Age of the stalest loop's last beat (None before any beat)."""
        if not self._beats:
            return None
        return self._clock() - min(self._beats.values())

    def live(self) -> bool:
        """Live until a beat is overdue (a slow start is the startup probe's job)."""
        age = self.age()
        return age is None or age <= self.max_age_s

    def ready(self) -> bool:
        age = self.age()
        return self._ready and age is not None and age <= self.max_age_s


_health: Health | None = None
_server: ThreadingWSGIServer | None = None
_lock = threading.Lock()


def health() -> Health:
    global _health
    if _health is None:
        _health = Health("unknown")
    return _health


def beat(loop: str = "main") -> None:
    """Called once per turn of a work loop."""
    health().beat(loop)


def ready(value: bool = True, loop: str = "main") -> None:
    health().set_ready(value, loop)


class _Quiet(WSGIRequestHandler):
    def log_message(self, format, *args):  # scrapes every few seconds: not worth a log line
        pass


def _app(metrics_app):
    def app(environ, start_response):
        path = environ.get("PATH_INFO", "")
        h = health()
        if path in ("/livez", "/readyz"):
            ok = h.live() if path == "/livez" else h.ready()
            age = h.age()
            body = f"{'ok' if ok else 'unhealthy'} {h.service} beat_age={age if age is None else round(age, 1)}\n"
            start_response("200 OK" if ok else "503 Service Unavailable", [("Content-Type", "text/plain")])
            return [body.encode()]
        if h.age() is not None:
            HEARTBEAT_AGE.labels(h.service).set(h.age())
        return metrics_app(environ, start_response)
    return app


def port_for(service: str, settings) -> int:
    configured = getattr(settings, "METRICS_PORT", None)
    return int(configured) if configured else DEFAULT_PORTS.get(service, 9100)


def serve(service: str, settings, *, host: str | None = None, port: int | None = None) -> int | None:
    """Start the exporter for this process (once); returns the port, None when it is taken.

    A taken port is logged, not fatal: the service's work matters more than its metrics.
    """
    global _server, _health
    with _lock:
        if _server is not None:
            return _server.server_port
        _health = Health(service, float(getattr(settings, "HEARTBEAT_MAX_AGE_S", 60.0)))
        UP_SINCE.labels(service).set(time.time())
        port = port if port is not None else port_for(service, settings)
        bind = host or ("0.0.0.0" if getattr(settings, "ENVIRONMENT", "") == "production" else "127.0.0.1")
        try:
            _server = make_server(bind, port, _app(make_wsgi_app(REGISTRY)), ThreadingWSGIServer,
                                  handler_class=_Quiet)
        except OSError as exc:
            log.warning("exporter.port_unavailable", service=service, port=port, error=str(exc))
            return None
        threading.Thread(target=_server.serve_forever, name=f"exporter-{service}", daemon=True).start()
        log.info("exporter.start", service=service, port=_server.server_port)
        return _server.server_port


def stop() -> None:
    global _server
    with _lock:
        if _server is not None:
            _server.shutdown()
            _server.server_close()
            _server = None


# --- helpers for stage code ------------------------------------------------------------

def timed_stage(service: str, stage: str, fn: Callable[[list], Any]) -> Callable[[list], Any]:
    """Wrap a batch stage: records batch size and time per call."""
    sizes = BATCH_SIZE.labels(service, stage)
    seconds = STAGE_SECONDS.labels(service, stage)

    def wrapped(batch):
        sizes.observe(len(batch))
        with seconds.time():
            return fn(batch)
    return wrapped


def count_out(service: str, items: Iterable[Any]) -> None:
    """Count SupportEvents/Escalations put out by channel and kind."""
    for item in items:
        channel = getattr(getattr(item, "channel", None), "value", None) or "none"
        kind = getattr(getattr(item, "kind", None), "value", None) or type(item).__name__.lower()
        MESSAGES_OUT.labels(service, channel, kind).inc()


class RecoveryCollector:
    """Recovery partitions of a flow process and the age of the newest snapshot write."""

    def __init__(self, service: str, directory: Path):
        self.service = service
        self.directory = directory

    def collect(self):
        parts = list(self.directory.glob("part-*.sqlite3*")) if self.directory.is_dir() else []
        held = GaugeMetricFamily("fte_recovery_partitions_held", "Recovery partition files held",
                                 labels=["service"])
        held.add_metric([self.service], len([p for p in parts if p.name.endswith(".sqlite3")]))
        yield held
        age = GaugeMetricFamily("fte_recovery_last_snapshot_age_seconds",
                                "Seconds since a recovery partition was last written", labels=["service"])
        if parts:
            newest = max(p.stat().st_mtime for p in parts)
            age.add_metric([self.service], max(0.0, time.time() - newest))
        yield age


def watch_recovery(service: str, directory: Path | None) -> None:
    if directory is not None:
        try:
            REGISTRY.register(RecoveryCollector(service, directory))
        except ValueError:  # already registered in this process
            pass


def record_uptime(service: str, settings, poll_s: float = 5.0) -> threading.Thread:
    """Record each minute this process is live in `service_uptime` (the report's uptime).

    Checked every `poll_s`; one row per minute at most (the first live check in it).
    """
    import os
    import socket

    import psycopg

    instance = f"{socket.gethostname()}:{os.getpid()}"

    def loop() -> None:
        conn = None
        last_minute = None
        while True:
            minute = int(time.time() // 60)
            h = health()
            try:
                if minute != last_minute and h.age() is not None and h.live():
                    if conn is None or conn.closed:
                        conn = psycopg.connect(settings.database_url, autocommit=True, connect_timeout=5)
                    conn.execute("INSERT INTO service_uptime (service, instance, minute) "
                                 "VALUES (%s, %s, to_timestamp(%s)) ON CONFLICT DO NOTHING",
                                 (service, instance, minute * 60))
                    last_minute = minute
            except Exception as exc:  # noqa: BLE001 -- history is best effort; the service goes on
                log.warning("uptime.record_failed", service=service, error=str(exc)[:200])
                if conn is not None:
                    conn.close()
                conn = None
            time.sleep(poll_s)

    thread = threading.Thread(target=loop, name=f"uptime-{service}", daemon=True)
    thread.start()
    return thread


def heartbeat_interval(settings) -> timedelta:
    return timedelta(seconds=max(1.0, float(getattr(settings, "HEARTBEAT_MAX_AGE_S", 60.0)) / 6))


def _channel_of(item: Any) -> str:
    for path in (("inbound", "msg", "channel"), ("msg", "channel"), ("channel",)):
        value = item
        for attr in path:
            value = getattr(value, attr, None)
        if value is not None:
            return getattr(value, "value", str(value))
    return "none"


def observe_batches(service: str, stage: str, handler: Callable[[list], list]) -> Callable[[list], list]:
    """Wrap a batch handler: messages in per channel, batch size and time, events out."""
    sizes = BATCH_SIZE.labels(service, stage)
    seconds = STAGE_SECONDS.labels(service, stage)

    def wrapped(batch: list) -> list:
        for item in batch:
            MESSAGES_IN.labels(service, _channel_of(item)).inc()
        sizes.observe(len(batch))
        with seconds.time():
            out = handler(batch)
        count_out(service, out)
        return out
    return wrapped


def observe_stages(service: str, stages: Any) -> Any:
    """The support flow's load_context / decide / persist steps with their batch sizes and
    times recorded, messages in counted per channel and planned replies per channel and kind."""
    from types import SimpleNamespace

    def timed(stage: str, step: Callable[[Any], Any], size: Callable[[Any], int]) -> Callable[[Any], Any]:
        sizes, seconds = BATCH_SIZE.labels(service, stage), STAGE_SECONDS.labels(service, stage)

        def run(value: Any) -> Any:
            sizes.observe(size(value))
            with seconds.time():
                return step(value)
        return run

    def load(batch: list) -> Any:
        for item in batch:
            MESSAGES_IN.labels(service, _channel_of(item)).inc()
        return stages.load_step(batch)

    def decide(staged: Any) -> Any:
        out = stages.decide_step(staged)
        if out.error is None:
            count_out(service, out.value.replies)
        return out

    def batch_len(staged: Any) -> int:
        return len(staged.batch)

    return SimpleNamespace(load_step=timed("load_context", load, len),
                           decide_step=timed("decide", decide, batch_len),
                           persist_step=timed("persist", stages.persist_step, batch_len))


class ObservedAgent:
    """An agent with its latency per message and its confidence (top KB score) recorded."""

    def __init__(self, agent: Any):
        self.agent = agent

    def _record(self, results: list, elapsed: float) -> list:
        for result in results:
            model = getattr(result, "provider", "unknown")
            AGENT_SECONDS.labels(model).observe(elapsed / max(1, len(results)))
            score = getattr(result, "kb_top_score", None)
            if score is not None:
                AGENT_CONFIDENCE.labels(model).observe(max(0.0, min(1.0, float(score))))
        return results

    def respond(self, req):
        started = time.perf_counter()
        result = self.agent.respond(req)
        return self._record([result], time.perf_counter() - started)[0]

    def respond_many(self, reqs):
        started = time.perf_counter()
        if hasattr(self.agent, "respond_many"):
            results = list(self.agent.respond_many(reqs))
        else:
            results = [self.agent.respond(r) for r in reqs]
        return self._record(results, time.perf_counter() - started)

    def __getattr__(self, name: str):
        return getattr(self.agent, name)


class OutboxCollector:
    """Outbox depth per channel and status, and the oldest unsent row's age, read at scrape time."""

    QUERY = ("SELECT channel, status, count(*), extract(epoch FROM now() - min(created_at)) "
             "FROM reply_outbox WHERE status IN ('pending', 'sending', 'parked') GROUP BY channel, status")

    def __init__(self, database_url: str):
        self.database_url = database_url

    def collect(self):
        import psycopg

        depth = GaugeMetricFamily("fte_outbox_depth", "Reply outbox rows not yet sent",
                                  labels=["channel", "status"])
        oldest = GaugeMetricFamily("fte_outbox_oldest_age_seconds", "Age of the oldest unsent outbox row",
                                   labels=["channel"])
        try:
            with psycopg.connect(self.database_url, connect_timeout=3) as conn:
                rows = conn.execute(self.QUERY).fetchall()
        except psycopg.Error as exc:
            log.warning("exporter.outbox_query_failed", error=str(exc)[:200])
            rows = []
        ages: dict[str, float] = {}
        for channel, status, count, age in rows:
            depth.add_metric([channel, status], count)
            ages[channel] = max(ages.get(channel, 0.0), float(age or 0.0))
        for channel, age in ages.items():
            oldest.add_metric([channel], age)
        yield depth
        yield oldest


def watch_outbox(database_url: str) -> None:
    try:
        REGISTRY.register(OutboxCollector(database_url))
    except ValueError:
        pass
