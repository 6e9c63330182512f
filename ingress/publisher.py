"""Publishing inbound events: one shared idempotent producer, acks awaited without flushing.

A request awaits an asyncio future that the producer's delivery callback resolves (from
the poll thread), so hundreds of requests share the producer's batches instead of each
flushing it. The producer's own `message.timeout.ms` bounds the wait: when it fails a
message, that message is never delivered later, so a 503 is never a silent success.
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass

from confluent_kafka import KafkaError, KafkaException, Producer

from fte.kafka import idempotent_producer
from fte.logs import get_logger

log = get_logger(__name__)

# Brokers unreachable for longer than this: refuse at once (a brief blip, such as an idle
# connection the broker closed, is cleared by the poll thread's probe well before).
FAIL_FAST_AFTER_S = 2.0


class KafkaUnavailable(RuntimeError):
    """Kafka did not acknowledge the event: answer 503, claim nothing."""


@dataclass(frozen=True)
class Delivered:
    topic: str
    partition: int
    offset: int


class Publisher:
    def __init__(self, bootstrap: str, *, timeout_s: float = 5.0):
        self.bootstrap = bootstrap
        self.timeout_s = timeout_s
        self._producer = self._new_producer()
        self._stop = threading.Event()
        self._fatal = False
        # Set from error_cb when every broker is unreachable; cleared by the next ack.
        self._brokers_down_since: float | None = None
        self._thread = threading.Thread(target=self._poll_loop, name="kafka-poll", daemon=True)
        self._thread.start()

    def _new_producer(self) -> Producer:
        ms = int(self.timeout_s * 1000)
        return idempotent_producer(
            self.bootstrap,
            **{
                "message.timeout.ms": ms,
                "socket.timeout.ms": min(ms, 5_000),
                "linger.ms": 2,
                "error_cb": self._on_error,
            },
        )

    # --- callbacks (poll thread) ---------------------------------------------------------
    def _on_error(self, err: KafkaError) -> None:
        if err.code() == KafkaError._ALL_BROKERS_DOWN:
            self._brokers_down_since = self._brokers_down_since or time.monotonic()
        if err.fatal():
            self._fatal = True
        if err.fatal() or err.code() == KafkaError._ALL_BROKERS_DOWN:
            log.warning("kafka.producer_error", error=str(err), fatal=err.fatal())
        else:  # per-connection retries while a broker is away: noise at warning level
            log.debug("kafka.producer_error", error=str(err))

    def _poll_loop(self) -> None:
        next_probe = 0.0
        while not self._stop.is_set():
            producer = self._producer
            producer.poll(0.05)
            if self._brokers_down_since is not None and time.monotonic() >= next_probe:
                # No deliveries while refusing fast: a metadata round trip says when it is back.
                next_probe = time.monotonic() + 0.5
                try:
                    producer.list_topics(timeout=0.5)
                    self._brokers_down_since = None
                    log.info("kafka.brokers_back")
                except KafkaException:
                    pass
            if self._fatal:
                # An idempotent producer that hit a fatal error refuses everything: replace it.
                log.error("kafka.producer_replaced")
                self._fatal = False
                self._producer = self._new_producer()
                producer.flush(0)

    # --- API -----------------------------------------------------------------------------
    @property
    def brokers_down(self) -> bool:
        return self._brokers_down_since is not None

    async def publish(self, topic: str, key: str, value: bytes) -> Delivered:
        """Produce and wait for the broker's ack; raises KafkaUnavailable otherwise."""
        down_since = self._brokers_down_since
        if down_since is not None and time.monotonic() - down_since > FAIL_FAST_AFTER_S:
            # Waiting the full timeout would hold a database connection per request for
            # nothing and exhaust the pool; refuse at once until the brokers answer again.
            raise KafkaUnavailable("Kafka brokers unreachable")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Delivered] = loop.create_future()

        def settle(result: Delivered | Exception) -> None:
            if future.done():
                return
            if isinstance(result, Exception):
                future.set_exception(result)
            else:
                future.set_result(result)

        def on_delivery(err, msg) -> None:
            if err is not None:
                outcome: Delivered | Exception = KafkaUnavailable(str(err))
            else:
                self._brokers_down_since = None
                outcome = Delivered(msg.topic(), msg.partition(), msg.offset())
            loop.call_soon_threadsafe(settle, outcome)

        try:
            self._producer.produce(topic, value=value, key=key.encode(), on_delivery=on_delivery)
        except (BufferError, KafkaException) as exc:
            raise KafkaUnavailable(f"produce refused: {exc}") from exc
        try:
            # The producer reports within message.timeout.ms; the margin covers scheduling.
            return await asyncio.wait_for(future, self.timeout_s + 5.0)
        except TimeoutError as exc:
            raise KafkaUnavailable("no delivery report") from exc

    def healthy(self, timeout: float = 2.0) -> bool:
        """A metadata round trip to the cluster (blocking: call from a thread)."""
        try:
            self._producer.list_topics(timeout=timeout)
            return True
        except KafkaException:
            return False

    def close(self, timeout: float = 10.0) -> None:
        self._producer.flush(timeout)
        self._stop.set()
        self._thread.join(5)
