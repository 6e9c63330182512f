"""The outbox dispatcher (`fte dispatch`): delivers due `reply_outbox` rows, each exactly once.

One worker thread per channel, so a failing channel API never holds up the others. A worker
claims due rows with FOR UPDATE SKIP LOCKED and marks them 'sending' with a lease (the
row's next_attempt_at); it wakes on NOTIFY reply_outbox (low latency) and sweeps every
`sweep_s` anyway (missed notifications, parked rows coming due, expired leases).

Exactly once: each part is marked sent (parts_sent, provider_message_ids) right after the
API accepted it. A row claimed while already 'sending' is in doubt — a process died between
the API call and that mark — so the part is first looked up at the API (Gmail: our
deterministic Message-ID in sent mail; Twilio: the recipient's messages) and only sent if
it is not there.

Failures: retried with exponential backoff (status 'parked', next_attempt_at), never dropped;
a request the API rejects as invalid (4xx) is marked 'failed'. A circuit breaker per channel
opens after N consecutive failures; while open nothing is claimed for that channel, and after
the reset time one row is tried as a probe (half-open).
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import psycopg
from psycopg.rows import dict_row

from fte import observability
from fte.logs import get_logger
from schema.events import Channel, SupportEvent, SupportEventKind
from sinks.outbox import NOTIFY_CHANNEL
from sinks.senders import PermanentSendError

log = get_logger(__name__)

CLAIM = """
WITH due AS (
    SELECT id, status AS prev_status, claimed_at AS prev_claimed_at FROM reply_outbox
    WHERE channel = %(channel)s AND status IN ('pending', 'parked', 'sending')
      AND next_attempt_at <= now()
    ORDER BY next_attempt_at, id
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
UPDATE reply_outbox r
SET status = 'sending', attempts = r.attempts + 1, claimed_at = now(),
    next_attempt_at = now() + make_interval(secs => %(lease)s)
FROM due WHERE r.id = due.id
RETURNING r.*, due.prev_status, due.prev_claimed_at
"""


REPORT_BREAKER = """
INSERT INTO dispatcher_breakers (dispatcher, channel, state, consecutive_failures, opened_at, updated_at)
VALUES (%(dispatcher)s, %(channel)s, %(state)s, %(failures)s, %(opened_at)s, now())
ON CONFLICT (dispatcher, channel) DO UPDATE
   SET state = EXCLUDED.state, consecutive_failures = EXCLUDED.consecutive_failures,
       opened_at = EXCLUDED.opened_at, updated_at = now()
"""


class CircuitBreaker:
    """closed -> open after `failures` in a row -> half-open after `reset_s` (one probe)."""

    def __init__(self, failures: int, reset_s: float, clock: Callable[[], float] = time.monotonic):
        self.threshold, self.reset_s, self.clock = failures, reset_s, clock
        self.consecutive = 0
        self.opened_at: float | None = None

    @property
    def state(self) -> str:
        if self.opened_at is None:
            return "closed"
        return "half-open" if self.clock() - self.opened_at >= self.reset_s else "open"

    def allowed(self) -> int:
        """How many rows may be tried now: many when closed, one probe when half-open."""
        return {"closed": 20, "half-open": 1, "open": 0}[self.state]

    def success(self) -> None:
        self.consecutive, self.opened_at = 0, None

    def failure(self) -> None:
        self.consecutive += 1
        if self.state == "half-open" or self.consecutive >= self.threshold:
            self.opened_at = self.clock()  # (re)open: the probe failed or too many failures

    def wait_s(self) -> float:
        if self.opened_at is None:
            return 0.0
        return max(0.0, self.reset_s - (self.clock() - self.opened_at))


class Dispatcher:
    def __init__(self, database_url: str, senders: dict[str, Callable[[], object]], *,
                 publish: Callable[[SupportEvent], None] | None = None,
                 breaker_failures: int = 5, breaker_reset_s: float = 10.0,
                 retry_base_s: float = 1.0, retry_max_s: float = 60.0, lease_s: float = 30.0,
                 sweep_s: float = 1.0):
        """`senders` maps channel -> factory (built inside that channel's thread)."""
        self.database_url = database_url
        self.sender_factories = senders
        self.publish = publish or (lambda e: None)
        self.breakers = {c: CircuitBreaker(breaker_failures, breaker_reset_s) for c in senders}
        self.retry_base_s, self.retry_max_s, self.lease_s, self.sweep_s = (
            retry_base_s, retry_max_s, lease_s, sweep_s)
        self.wake = {c: threading.Event() for c in senders}
        self.stopping = threading.Event()
        self.name = f"{socket.gethostname()}:{os.getpid()}"
        self._reported: dict[str, tuple[str, float]] = {}  # channel -> (state, monotonic time)
        self.threads: list[threading.Thread] = []

    # --- lifecycle ---------------------------------------------------------------------------
    def start(self) -> Dispatcher:
        self.threads = [threading.Thread(target=self._listen, name="outbox-listen", daemon=True)]
        self.threads += [threading.Thread(target=self._channel_loop, args=(c,), name=f"outbox-{c}",
                                          daemon=True) for c in self.sender_factories]
        for t in self.threads:
            t.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self.stopping.set()
        for e in self.wake.values():
            e.set()
        for t in self.threads:
            t.join(timeout)

    def _listen(self) -> None:
        while not self.stopping.is_set():
            try:
                with psycopg.connect(self.database_url, autocommit=True) as conn:
                    conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
                    while not self.stopping.is_set():
                        for note in conn.notifies(timeout=1.0):
                            event = self.wake.get(note.payload)
                            for ch, e in self.wake.items():
                                if event is None or ch == note.payload:
                                    e.set()
            except psycopg.Error as exc:
                log.warning("dispatcher.listen_failed", error=str(exc))
                self.stopping.wait(1.0)

    # --- one channel -------------------------------------------------------------------------
    def _channel_loop(self, channel: str) -> None:
        sender = None
        conn = None
        breaker = self.breakers[channel]
        while not self.stopping.is_set():
            observability.beat(f"outbox-{channel}")  # /livez: this channel's loop turns
            try:
                if sender is None:
                    sender = self.sender_factories[channel]()
                if conn is None or conn.closed:
                    conn = psycopg.connect(self.database_url, row_factory=dict_row, autocommit=True)
                self.report_breaker(conn, channel)
                limit = breaker.allowed()
                sent_any = False
                if limit:
                    sent_any = self.run_once(conn, channel, sender, limit)
                if not sent_any:
                    wait = self.sweep_s if limit else min(self.sweep_s, breaker.wait_s() or self.sweep_s)
                    self.wake[channel].wait(wait)
                    self.wake[channel].clear()
            except Exception as exc:  # noqa: BLE001 -- a broken connection or sender: rebuild, carry on
                log.error("dispatcher.loop_error", channel=channel, error=str(exc))
                if conn is not None:
                    conn.close()
                conn = None
                self.stopping.wait(1.0)
        if conn is not None:
            conn.close()

    def report_breaker(self, conn: psycopg.Connection, channel: str, every_s: float = 10.0) -> None:
        """Upsert this process's breaker state for `channel` when it changed, else every `every_s`."""
        breaker = self.breakers[channel]
        state, now = breaker.state, time.monotonic()
        observability.BREAKER_OPEN.labels(channel).set(1 if state == "open" else 0)
        last = self._reported.get(channel)
        if last is not None and last[0] == state and now - last[1] < every_s:
            return
        opened_at = None
        if breaker.opened_at is not None:
            opened_at = datetime.now(UTC) - timedelta(seconds=breaker.clock() - breaker.opened_at)
        conn.execute(REPORT_BREAKER, {"dispatcher": self.name, "channel": channel, "state": state,
                                      "failures": breaker.consecutive, "opened_at": opened_at})
        self._reported[channel] = (state, now)

    def claim(self, conn: psycopg.Connection, channel: str, limit: int) -> list[dict]:
        return conn.execute(CLAIM, {"channel": channel, "limit": limit, "lease": self.lease_s}).fetchall()

    def run_once(self, conn: psycopg.Connection, channel: str, sender, limit: int = 20) -> bool:
        """Claim and deliver one batch; True when rows were claimed."""
        rows = self.claim(conn, channel, limit)
        breaker = self.breakers[channel]
        for i, row in enumerate(rows):
            if breaker.allowed() == 0:
                self._release(conn, rows[i:])  # circuit opened: give the rest back untouched
                break
            self.deliver(conn, sender, row)
        return bool(rows)

    def _release(self, conn: psycopg.Connection, rows: list[dict]) -> None:
        for row in rows:
            # Not attempted now: back to its previous state (an in-doubt row stays in doubt).
            conn.execute("UPDATE reply_outbox SET status = %s, attempts = attempts - 1, "
                         "next_attempt_at = now() WHERE id = %s AND status = 'sending'",
                         (row["prev_status"], row["id"]))

    def deliver(self, conn: psycopg.Connection, sender, row: dict) -> None:
        channel = row["channel"]
        breaker = self.breakers[channel]
        parts = (row["payload"] or {}).get("parts") or [row["body"]]
        done, ids = row["parts_sent"], list(row["provider_message_ids"] or [])
        in_doubt = row["prev_status"] == "sending"
        try:
            for index in range(done, len(parts)):
                provider_id = None
                if in_doubt and index == done:
                    # Ids already recorded for this recipient cannot be this part.
                    known = {r["id"] for r in conn.execute(
                        "SELECT unnest(provider_message_ids) AS id FROM reply_outbox "
                        "WHERE channel = %s AND recipient = %s", (channel, row["recipient"])).fetchall()}
                    provider_id = sender.find_sent(row, index, parts[index], exclude=known)
                    if provider_id:
                        log.info("dispatcher.reconciled", channel=channel, outbox_id=row["id"], part=index)
                if provider_id is None:
                    provider_id = sender.send(row, index, parts[index])
                ids.append(provider_id)
                conn.execute("UPDATE reply_outbox SET parts_sent = %s, provider_message_ids = %s "
                             "WHERE id = %s", (index + 1, ids, row["id"]))
                row = {**row, "provider_message_ids": ids}
        except PermanentSendError as exc:
            breaker.success()  # the API is up; this request is wrong
            conn.execute("UPDATE reply_outbox SET status = 'failed', last_error = %s WHERE id = %s",
                         (str(exc)[:1000], row["id"]))
            log.error("dispatcher.failed", channel=channel, outbox_id=row["id"], error=str(exc))
            observability.SENDS.labels(channel, "failed").inc()
            self._event(SupportEventKind.FAILED, row, str(exc))
            return
        except Exception as exc:  # noqa: BLE001 -- any other failure: park and retry later
            breaker.failure()
            delay = min(self.retry_max_s, self.retry_base_s * 2 ** max(0, row["attempts"] - 1))
            conn.execute("UPDATE reply_outbox SET status = 'parked', last_error = %s, "
                         "next_attempt_at = now() + make_interval(secs => %s) WHERE id = %s",
                         (f"{type(exc).__name__}: {exc}"[:1000], delay, row["id"]))
            observability.SENDS.labels(channel, "retry").inc()
            log.warning("dispatcher.parked", channel=channel, outbox_id=row["id"],
                        attempts=row["attempts"], retry_in_s=delay, breaker=breaker.state)
            if row["attempts"] == 1:
                self._event(SupportEventKind.FAILED, row, f"{type(exc).__name__}: {exc}")
            return
        breaker.success()
        observability.SENDS.labels(channel, "sent").inc()
        with conn.transaction():
            conn.execute("UPDATE reply_outbox SET status = 'sent', sent_at = now(), last_error = NULL "
                         "WHERE id = %s", (row["id"],))
            if row["kind"] in ("agent", "human") and row["ticket_id"]:
                conn.execute("UPDATE tickets SET first_response_at = coalesce(first_response_at, now()) "
                             "WHERE id = %s", (row["ticket_id"],))
        self._event(SupportEventKind.SENT, row)

    def _event(self, kind: SupportEventKind, row: dict, reason: str | None = None) -> None:
        try:
            self.publish(SupportEvent(kind=kind, channel=Channel(row["channel"]),
                                      inbound_key=row["inbound_key"], customer_id=row["customer_id"],
                                      ticket_id=row["ticket_id"], occurred_at=datetime.now(UTC),
                                      reply_kind=row["kind"], reason=reason))
        except Exception as exc:  # noqa: BLE001 -- metrics are best effort; the delivery is recorded
            log.warning("dispatcher.event_failed", error=str(exc))


def kafka_publisher(settings) -> Callable[[SupportEvent], None]:
    from fte.kafka import idempotent_producer
    from schema.topics import SUPPORT_EVENTS, topic_name

    producer = idempotent_producer(settings.kafka_bootstrap)
    topic = topic_name(SUPPORT_EVENTS, settings.TOPIC_PREFIX)
    lock = threading.Lock()

    def publish(event: SupportEvent) -> None:
        with lock:
            producer.produce(topic, value=event.to_bytes(), key=str(event.customer_id or "").encode())
            producer.poll(0)
    publish.producer = producer  # type: ignore[attr-defined]
    return publish


def build_dispatcher(settings, *, sweep_s: float = 1.0) -> Dispatcher:
    from sinks.senders import GmailSender, TwilioSender, WebSender

    return Dispatcher(
        settings.database_url,
        {"email": lambda: GmailSender(settings), "whatsapp": lambda: TwilioSender(settings),
         "web": WebSender},
        publish=kafka_publisher(settings),
        breaker_failures=settings.DISPATCH_BREAKER_FAILURES,
        breaker_reset_s=settings.DISPATCH_BREAKER_RESET_S,
        retry_base_s=settings.DISPATCH_RETRY_BASE_S, retry_max_s=settings.DISPATCH_RETRY_MAX_S,
        lease_s=settings.DISPATCH_LEASE_S, sweep_s=sweep_s,
    )
