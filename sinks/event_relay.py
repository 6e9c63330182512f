"""The event relay: event-outbox rows -> Kafka, then marked published.

Runs as `fte relay` (a service of `fte up`) or inside any process (`EventRelay(...).start()`,
e.g. next to the dispatcher). Each round claims pending rows with FOR UPDATE SKIP LOCKED (so
several relays never publish the same row concurrently), produces their events with the
idempotent producer, waits for every delivery report and only then marks the rows, in the
same transaction. A crash anywhere before that commit leaves the rows pending: they are
published again on restart (at least once; consumers key on inbound_key + kind). Wakes on
NOTIFY event_outbox, and polls every `idle_s` in case a notification was missed.
"""

from __future__ import annotations

import select
import threading
from collections.abc import Callable

import psycopg

from fte import observability
from fte.logs import get_logger
from schema.queries.events import NOTIFY_CHANNEL, claim_pending, mark_published

log = get_logger(__name__)


class DeliveryFailed(RuntimeError):
    pass


class EventRelay:
    def __init__(self, database_url: str, bootstrap: str, *, prefix: str = "",
                 batch_rows: int = 200, idle_s: float = 1.0,
                 producer_factory: Callable | None = None):
        self.database_url = database_url
        self.bootstrap = bootstrap
        self.prefix = prefix
        self.batch_rows = batch_rows
        self.idle_s = idle_s
        self._producer_factory = producer_factory
        self._producer = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.published = 0  # events, for logs and tests

    @property
    def producer(self):
        if self._producer is None:
            if self._producer_factory is not None:
                self._producer = self._producer_factory()
            else:
                from fte.kafka import idempotent_producer

                self._producer = idempotent_producer(self.bootstrap)
        return self._producer

    def relay_once(self, conn: psycopg.Connection) -> int:
        """Publish one round of pending rows; returns how many rows were marked."""
        with conn.transaction():
            batches = claim_pending(conn, self.batch_rows)
            if not batches:
                return 0
            failures: list[str] = []

            def report(err, _msg) -> None:
                if err is not None:
                    failures.append(str(err))
            producer = self.producer
            n = 0
            for b in batches:
                for e in b.events:
                    producer.produce(f"{self.prefix}{e.topic}", key=e.key.encode(),
                                     value=e.value.encode(), on_delivery=report)
                    n += 1
                    if n % 1000 == 0:
                        producer.poll(0)
            remaining = producer.flush(30)
            if remaining or failures:
                # Not marked: the transaction rolls back and the rows stay pending.
                raise DeliveryFailed(f"{remaining} undelivered, errors: {failures[:3]}")
            mark_published(conn, [b.id for b in batches])
        for b in batches:
            for e in b.events:
                observability.RELAYED.labels(e.topic).inc()
        self.published += n
        return len(batches)

    def run(self) -> None:
        while not self._stop.is_set():
            try:
                with psycopg.connect(self.database_url, autocommit=True, connect_timeout=10) as conn:
                    conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
                    observability.ready(loop="event-relay")  # connected: ready to publish
                    while not self._stop.is_set():
                        observability.beat("event-relay")  # /livez: the loop turns (idle poll included)
                        if self.relay_once(conn):
                            continue  # more may be pending
                        # Nothing pending: sleep until a NOTIFY (or the idle poll).
                        select.select([conn.fileno()], [], [], self.idle_s)
                        for _ in conn.notifies(timeout=0):
                            pass
            except Exception as exc:  # noqa: BLE001 -- database or broker down: retry, nothing lost
                log.warning("relay.retry", error=str(exc))
                observability.ready(False, loop="event-relay")
                self._stop.wait(min(5.0, self.idle_s * 2))

    def start(self) -> EventRelay:
        self._thread = threading.Thread(target=self.run, name="event-relay", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        if self._producer is not None:
            self._producer.flush(10)


def build_relay(settings, **kwargs) -> EventRelay:
    return EventRelay(settings.database_url, settings.kafka_bootstrap, prefix=settings.TOPIC_PREFIX,
                      **kwargs)
