"""The outbox dispatcher (`fte dispatch`): delivers due `reply_outbox` rows, each exactly once.

One claim thread per channel, so a failing channel API never holds up the others. It claims
due rows with FOR UPDATE SKIP LOCKED and marks them 'sending' with a lease (the row's
next_attempt_at); it wakes on NOTIFY reply_outbox (low latency) and sweeps every `sweep_s`
anyway (missed notifications, parked rows coming due, expired leases). Claimed rows are
delivered by `concurrency` worker threads per channel, each with its own database connection
and its own sender (API clients such as httplib2 are not thread-safe). Rows for one recipient
go to the same worker, in claim order, so one customer's replies keep their order and an
in-doubt lookup never races a send to the same recipient. The claim thread keeps at most
`concurrency` x 4 rows in hand (less when the backlog is small).

Exactly once: each part is marked sent (parts_sent, provider_message_ids) right after the
API accepted it. A row claimed while already 'sending' is in doubt — a process died between
the API call and that mark — so the part is first looked up at the API (Gmail: our
deterministic Message-ID in sent mail; Twilio: the recipient's messages) and only sent if
it is not there.

Claims: each claim gets a fresh token, and every update of the row names it, so a worker
whose lease ran out (another replica has claimed the row since) changes nothing. The lease
is renewed before each part, and client timeouts are under half the lease (settings), so a
send never outlives its lease. A timeout or 5xx after the request left leaves the part in
doubt (`in_doubt`): the next attempt reconciles it the same way as an expired lease.

WhatsApp outside the 24-hour session window: the approved template (TWILIO_TEMPLATE_CONTENT_SID)
or, without one, the same answer by email to the customer's address; with neither, a person.
Web answers are also emailed, with the ticket page link, when the ticket's email is verified.

Failures: retried with exponential backoff (status 'parked', next_attempt_at), never dropped;
a request the API rejects as invalid (4xx) is marked 'failed'; a reply that cannot even be
built (CR/LF in a header, a bad recipient) is 'failed' without touching the breaker.
A circuit breaker per channel opens after N consecutive failures; while open nothing is
claimed for that channel, and after the reset time one row is tried as a probe (half-open).
"""

from __future__ import annotations

import os
import queue
import socket
import threading
import time
import zlib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from fte import observability
from fte.logs import get_logger
from schema.events import Channel, SupportEvent, SupportEventKind
from schema.queries import channels as q
from sinks.outbox import NOTIFY_CHANNEL
from sinks.senders import InvalidReplyError, MaybeSentError, PermanentSendError, ticket_page_url


class LostClaim(Exception):
    """The row was claimed by another worker since (this worker's lease ran out)."""


log = get_logger(__name__)

REPORT_BREAKER = """
INSERT INTO dispatcher_breakers (dispatcher, channel, state, consecutive_failures, opened_at, updated_at)
VALUES (%(dispatcher)s, %(channel)s, %(state)s, %(failures)s, %(opened_at)s, now())
ON CONFLICT (dispatcher, channel) DO UPDATE
   SET state = EXCLUDED.state, consecutive_failures = EXCLUDED.consecutive_failures,
       opened_at = EXCLUDED.opened_at, updated_at = now()
"""


class CircuitBreaker:
    """closed -> open after `failures` in a row -> half-open after `reset_s` (one probe)."""

    def __init__(self, failures: int, reset_s: float, clock: Callable[[], float] = time.monotonic,
                 batch: int = 20):
        self.threshold, self.reset_s, self.clock, self.batch = failures, reset_s, clock, batch
        self.consecutive = 0
        self.opened_at: float | None = None
        self._lock = threading.Lock()  # the channel's workers report outcomes concurrently

    def _state(self) -> str:
        if self.opened_at is None:
            return "closed"
        return "half-open" if self.clock() - self.opened_at >= self.reset_s else "open"

    @property
    def state(self) -> str:
        with self._lock:
            return self._state()

    def allowed(self) -> int:
        """How many rows may be tried now: a batch when closed, one probe when half-open."""
        return {"closed": self.batch, "half-open": 1, "open": 0}[self.state]

    def success(self) -> None:
        with self._lock:
            self.consecutive, self.opened_at = 0, None

    def failure(self) -> None:
        with self._lock:
            self.consecutive += 1
            if self._state() == "half-open" or self.consecutive >= self.threshold:
                self.opened_at = self.clock()  # (re)open: the probe failed or too many failures

    def wait_s(self) -> float:
        with self._lock:
            if self.opened_at is None:
                return 0.0
            return max(0.0, self.reset_s - (self.clock() - self.opened_at))


class Dispatcher:
    def __init__(self, database_url: str, senders: dict[str, Callable[[], object]], *,
                 publish: Callable[[SupportEvent], None] | None = None,
                 breaker_failures: int = 5, breaker_reset_s: float = 10.0,
                 retry_base_s: float = 1.0, retry_max_s: float = 60.0, lease_s: float = 30.0,
                 sweep_s: float = 1.0, public_base_url: str = "http://127.0.0.1:8000",
                 whatsapp_session_hours: float = 24.0, whatsapp_template: bool = False,
                 whatsapp_status_callbacks: bool = False, concurrency: int = 8):
        """`senders` maps channel -> factory (one sender built inside each worker thread)."""
        self.database_url = database_url
        self.sender_factories = senders
        self.publish = publish or (lambda e: None)
        self.concurrency = max(1, concurrency)
        # Rows in hand per channel (queued or being delivered): enough to keep every worker
        # busy between claims, few enough that a queued row's lease is not spent waiting.
        self.in_hand = self.concurrency * 4
        self.breakers = {c: CircuitBreaker(breaker_failures, breaker_reset_s, batch=self.in_hand)
                         for c in senders}
        self.retry_base_s, self.retry_max_s, self.lease_s, self.sweep_s = (
            retry_base_s, retry_max_s, lease_s, sweep_s)
        self.public_base_url = public_base_url
        self.session_window = timedelta(hours=whatsapp_session_hours)
        self.whatsapp_template = whatsapp_template
        # With status callbacks, a WhatsApp reply counts as the ticket's first response
        # when Twilio reports it sent/delivered, not when it accepted the request.
        self.whatsapp_status_callbacks = whatsapp_status_callbacks
        self.wake = {c: threading.Event() for c in senders}
        self.stopping = threading.Event()
        self.name = f"{socket.gethostname()}:{os.getpid()}"
        self._reported: dict[str, tuple[str, float]] = {}  # channel -> (state, monotonic time)
        self.threads: list[threading.Thread] = []
        self._queues = {c: [queue.Queue() for _ in range(self.concurrency)] for c in senders}
        self._pending = dict.fromkeys(senders, 0)  # rows handed to the workers, not yet done
        self._done = {c: threading.Condition() for c in senders}

    # --- lifecycle ---------------------------------------------------------------------------
    def start(self) -> Dispatcher:
        self.threads = [threading.Thread(target=self._listen, name="outbox-listen", daemon=True)]
        self.threads += [threading.Thread(target=self._channel_loop, args=(c,), name=f"outbox-{c}",
                                          daemon=True) for c in self.sender_factories]
        self.threads += [threading.Thread(target=self._worker, args=(c, i), name=f"outbox-{c}-{i}",
                                          daemon=True)
                         for c in self.sender_factories for i in range(self.concurrency)]
        for t in self.threads:
            t.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self.stopping.set()
        for e in self.wake.values():
            e.set()
        deadline = time.monotonic() + timeout
        for t in self.threads:
            t.join(max(0.0, deadline - time.monotonic()))

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
        """Claim due rows for the channel's workers; wait when they have enough in hand."""
        conn = None
        breaker = self.breakers[channel]
        done = self._done[channel]
        while not self.stopping.is_set():
            observability.beat(f"outbox-{channel}")  # /livez: this channel's loop turns
            try:
                if conn is None or conn.closed:
                    conn = psycopg.connect(self.database_url, row_factory=dict_row, autocommit=True)
                self.report_breaker(conn, channel)
                with done:
                    pending = self._pending[channel]
                limit = self._claim_limit(breaker, pending)
                if pending and (limit == 0 or pending >= self.concurrency):
                    with done:  # the workers are busy (or a probe is out): wait for one to finish
                        done.wait(self.sweep_s)
                    continue
                rows = self.claim(conn, channel, limit) if limit else []
                if rows:
                    self._hand_out(channel, rows)
                    continue
                wait = self.sweep_s if limit else min(self.sweep_s, breaker.wait_s() or self.sweep_s)
                self.wake[channel].wait(wait)
                self.wake[channel].clear()
            except Exception as exc:  # noqa: BLE001 -- a broken connection: rebuild, carry on
                log.error("dispatcher.loop_error", channel=channel, error=str(exc))
                if conn is not None:
                    conn.close()
                conn = None
                self.stopping.wait(1.0)
        if conn is not None:
            conn.close()

    def _claim_limit(self, breaker: CircuitBreaker, pending: int) -> int:
        """Rows to claim now: up to `in_hand` in all when closed; a single probe when half-open."""
        state = breaker.state
        if state == "half-open":
            return 0 if pending else 1
        return 0 if state == "open" else max(0, self.in_hand - pending)

    def _hand_out(self, channel: str, rows: list[dict]) -> None:
        with self._done[channel]:
            self._pending[channel] += len(rows)
        queues = self._queues[channel]
        for row in rows:
            # One recipient, one worker: its replies go out in order, one at a time.
            queues[zlib.crc32(row["recipient"].encode()) % len(queues)].put(row)

    def _worker(self, channel: str, index: int) -> None:
        """Deliver the rows handed to this worker, with its own connection and sender."""
        rows = self._queues[channel][index]
        done = self._done[channel]
        conn = sender = None
        while True:
            try:
                row = rows.get(timeout=0.5)
            except queue.Empty:
                if self.stopping.is_set():
                    break
                continue
            try:
                if sender is None:
                    sender = self.sender_factories[channel]()
                if conn is None or conn.closed:
                    conn = psycopg.connect(self.database_url, row_factory=dict_row, autocommit=True)
                if self.stopping.is_set() or self.breakers[channel].allowed() == 0:
                    self._release(conn, [row])  # stopping, or the circuit opened: give it back
                else:
                    self.deliver(conn, sender, row)
            except Exception as exc:  # noqa: BLE001 -- a broken connection or sender: rebuild
                # The row keeps its lease; when that runs out it is claimed again as in doubt.
                log.error("dispatcher.worker_error", channel=channel, outbox_id=row["id"], error=str(exc))
                if conn is not None:
                    conn.close()
                conn = sender = None
                self.stopping.wait(1.0)
            finally:
                with done:
                    self._pending[channel] -= 1
                    done.notify_all()
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
        return conn.execute(q.CLAIM, {"channel": channel, "limit": limit, "lease": self.lease_s}).fetchall()

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
            conn.execute(q.RELEASE, {"prev_status": row["prev_status"], "id": row["id"],
                                     "token": row["claim_token"]})

    def _update(self, conn: psycopg.Connection, sql: str, row: dict, **params) -> None:
        """Run an update of a claimed row; LostClaim when the claim is no longer ours."""
        cur = conn.execute(sql, {"id": row["id"], "token": row["claim_token"], **params})
        if cur.rowcount != 1:
            raise LostClaim(f"outbox row {row['id']}: claim {row['claim_token']} superseded")

    def deliver(self, conn: psycopg.Connection, sender, row: dict) -> None:
        try:
            self._deliver(conn, sender, row)
        except LostClaim as exc:
            # Whoever holds the row now owns its fate; nothing here may touch it.
            log.warning("dispatcher.lost_claim", channel=row["channel"], outbox_id=row["id"],
                        error=str(exc))

    def _deliver(self, conn: psycopg.Connection, sender, row: dict) -> None:
        channel = row["channel"]
        breaker = self.breakers[channel]
        parts = (row["payload"] or {}).get("parts") or [row["body"]]
        done, ids = row["parts_sent"], list(row["provider_message_ids"] or [])
        in_doubt = row["prev_status"] == "sending" or row.get("in_doubt", False)
        template = None
        # A verification code is the exception: the customer asked for it on the support page
        # a moment ago and it must reach that number, not another channel (see README).
        if (channel == "whatsapp" and done == 0 and row["kind"] != "verification"
                and not self._session_open(conn, row)):
            if not self.whatsapp_template:
                self._outside_window(conn, row)
                return
            # One approved template message replaces the parts; its variable is the ticket link.
            template = {"1": self._ticket_link(row) or "your support request"}
            parts = [sender.template_text(template)]
        try:
            for index in range(done, len(parts)):
                self._update(conn, q.RENEW_LEASE, row, lease=self.lease_s)
                provider_id = None
                if in_doubt and index == done:
                    # Ids already recorded for this recipient cannot be this part.
                    known = {r["id"] for r in conn.execute(
                        q.KNOWN_PROVIDER_IDS, (channel, row["recipient"])).fetchall()}
                    provider_id = sender.find_sent(row, index, parts[index], exclude=known)
                    if provider_id:
                        log.info("dispatcher.reconciled", channel=channel, outbox_id=row["id"], part=index)
                if provider_id is None:
                    if template is not None:
                        provider_id = sender.send(row, index, parts[index], template=template)
                    else:
                        provider_id = sender.send(row, index, parts[index])
                ids.append(provider_id)
                self._update(conn, q.RECORD_PART, row, parts_sent=len(parts) if template else index + 1,
                             ids=ids)
                row = {**row, "provider_message_ids": ids}
        except LostClaim:
            raise
        except PermanentSendError as exc:
            if not isinstance(exc, InvalidReplyError):
                breaker.success()  # the API is up; this request is wrong
            # (an invalid reply never reached the API: it says nothing about the channel)
            self._update(conn, q.MARK_FAILED, row, error=str(exc)[:1000])
            log.error("dispatcher.failed", channel=channel, outbox_id=row["id"], error=str(exc))
            observability.SENDS.labels(channel, "failed").inc()
            self._event(SupportEventKind.FAILED, row, str(exc))
            return
        except Exception as exc:  # noqa: BLE001 -- any other failure: park and retry later
            breaker.failure()
            maybe_sent = isinstance(exc, MaybeSentError)
            delay = min(self.retry_max_s, self.retry_base_s * 2 ** max(0, row["attempts"] - 1))
            self._update(conn, q.MARK_PARKED, row, error=f"{type(exc).__name__}: {exc}"[:1000],
                         in_doubt=maybe_sent, delay=delay)
            observability.SENDS.labels(channel, "retry").inc()
            log.warning("dispatcher.parked", channel=channel, outbox_id=row["id"], maybe_sent=maybe_sent,
                        attempts=row["attempts"], retry_in_s=delay, breaker=breaker.state)
            if row["attempts"] == 1:
                self._event(SupportEventKind.FAILED, row, f"{type(exc).__name__}: {exc}")
            return
        breaker.success()
        observability.SENDS.labels(channel, "sent").inc()
        with conn.transaction():
            self._update(conn, q.MARK_SENT, row)
            counts_now = not (channel == "whatsapp" and self.whatsapp_status_callbacks)
            if row["kind"] in ("agent", "human") and row["ticket_id"] and counts_now:
                conn.execute(q.FIRST_RESPONSE, {"ticket_id": row["ticket_id"]})
            if channel == "web":
                self._email_copy(conn, row)
        self._event(SupportEventKind.SENT, row)

    # --- channel rules ------------------------------------------------------------------------
    def _ticket_link(self, row: dict) -> str | None:
        return ticket_page_url(self.public_base_url, row["ticket_id"]) if row["ticket_id"] else None

    def _session_open(self, conn: psycopg.Connection, row: dict) -> bool:
        """WhatsApp allows free-form replies only within 24 h of the customer's last message."""
        last = conn.execute(q.LAST_WHATSAPP_INBOUND, {"customer_id": row["customer_id"]}).fetchone()
        at = last["at"] if last else None
        return at is not None and datetime.now(UTC) - at < self.session_window

    def _derived_reply(self, conn: psycopg.Connection, row: dict, *, key: str, recipient: str,
                       subject: str | None, body: str) -> int | None:
        found = conn.execute(q.INSERT_DERIVED_REPLY, {
            "inbound_key": key, "kind": row["kind"], "channel": "email",
            "customer_id": row["customer_id"], "conversation_id": row["conversation_id"],
            "ticket_id": row["ticket_id"], "escalation_id": row["escalation_id"],
            "recipient": recipient, "subject": subject, "body": body,
            "payload": Jsonb({"parts": [body]})}).fetchone()
        conn.execute("SELECT pg_notify(%s, 'email')", (NOTIFY_CHANNEL,))
        return found["id"] if found else None

    def _outside_window(self, conn: psycopg.Connection, row: dict) -> None:
        """No session and no template: the customer's email, else a person."""
        email = conn.execute(q.CUSTOMER_EMAIL, {"customer_id": row["customer_id"]}).fetchone()
        link = self._ticket_link(row)
        with conn.transaction():
            if email:
                body = row["body"] + (f"\n\nYour ticket: {link}" if link else "")
                self._derived_reply(conn, row, key=f"{row['inbound_key']}:email", recipient=email["value"],
                                    subject=row["subject"] or "Re: your WhatsApp message", body=body)
                self._update(conn, q.MARK_REROUTED, row,
                             error="outside the WhatsApp 24-hour window: sent by email instead")
                log.info("dispatcher.rerouted", outbox_id=row["id"], to="email")
                return
            reason = "outside the WhatsApp 24-hour window, no approved template and no other channel"
            conn.execute(q.ESCALATE_DELIVERY_FAILURE, {
                "customer_id": row["customer_id"], "conversation_id": row["conversation_id"],
                "ticket_id": row["ticket_id"], "inbound_key": f"delivery:{row['inbound_key']}",
                "channel": "whatsapp", "detail": reason})
            if row["ticket_id"]:
                conn.execute(q.TICKET_ESCALATED, {"ticket_id": row["ticket_id"]})
            self._update(conn, q.MARK_FAILED, row, error=reason)
        log.warning("dispatcher.escalated", outbox_id=row["id"], reason=reason)
        self._event(SupportEventKind.FAILED, row, reason)

    def _email_copy(self, conn: psycopg.Connection, row: dict) -> None:
        """A web answer also goes to the form's email (once verified), with the ticket link."""
        if not row["ticket_id"] or row["kind"] not in ("agent", "human", "clarify"):
            return
        ticket = conn.execute(q.TICKET_CONTACT, {"ticket_id": row["ticket_id"]}).fetchone()
        if not ticket or not ticket["contact_email"] or not ticket["contact_email_verified"]:
            return
        link = ticket_page_url(self.public_base_url, ticket["id"])
        body = f"{row['body']}\n\nSee your ticket and reply: {link}"
        subject = f"Re: {ticket['subject']}" if ticket["subject"] else f"Your support ticket {ticket['id']}"
        self._derived_reply(conn, row, key=f"{row['inbound_key']}:email", recipient=ticket["contact_email"],
                            subject=subject, body=body)

    def _event(self, kind: SupportEventKind, row: dict, reason: str | None = None) -> None:
        try:
            self.publish(SupportEvent(kind=kind, channel=Channel(row["channel"]),
                                      inbound_key=row["inbound_key"], customer_id=row["customer_id"],
                                      ticket_id=row["ticket_id"], occurred_at=datetime.now(UTC),
                                      reply_kind=row["kind"], reason=reason))
        except Exception as exc:  # noqa: BLE001 -- metrics are best effort; the delivery is recorded
            log.warning("dispatcher.event_failed", error=str(exc))


def kafka_publisher(settings) -> Callable[[SupportEvent], None]:
    """Publish support events asynchronously: produce() queues the event and returns; the
    idempotent producer delivers it in the background (retrying), poll() runs the delivery
    reports (failures are logged and counted), and `fte dispatch` polls every few seconds and
    flushes at stop. No per-event flush: the delivery itself is already recorded in Postgres."""
    from fte.kafka import idempotent_producer
    from schema.topics import SUPPORT_EVENTS, topic_name

    producer = idempotent_producer(settings.kafka_bootstrap)
    topic = topic_name(SUPPORT_EVENTS, settings.TOPIC_PREFIX)

    def delivered(err, msg) -> None:
        if err is not None:
            log.warning("dispatcher.event_undelivered", error=str(err))

    def publish(event: SupportEvent) -> None:
        # confluent-kafka's Producer is thread-safe: the channel workers produce concurrently.
        value, key = event.to_bytes(), str(event.customer_id or "").encode()
        while True:
            try:
                producer.produce(topic, value=value, key=key, on_delivery=delivered)
                break
            except BufferError:  # local queue full: let deliveries drain, then retry
                producer.poll(0.1)
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
        public_base_url=settings.PUBLIC_BASE_URL,
        whatsapp_session_hours=settings.WHATSAPP_SESSION_HOURS,
        whatsapp_template=bool(settings.TWILIO_TEMPLATE_CONTENT_SID),
        whatsapp_status_callbacks=settings.TWILIO_STATUS_CALLBACKS,
        concurrency=settings.DISPATCH_CONCURRENCY,
    )
