"""A periodic input for the metrics flow: consumer lag and new dead letters.

Lag per partition = the topic's Kafka high watermark - the `next_offset` a flow recorded in
`flow_progress` (created by the support flow's migration; until it exists, samples say
`progress_available=False` and no lag alert is raised). New dead letters are counted by id
since the previous sample; the last id seen is the source's recovery state, so a restart
does not report old dead letters again.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import psycopg
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from confluent_kafka import Consumer, TopicPartition

from flows.alerts import HealthSample, PartitionLag
from fte.logs import get_logger

log = get_logger(__name__)

AWAKE_AT_LEAST_EVERY = timedelta(milliseconds=200)

READ_FLOW_PROGRESS = """
SELECT flow, topic, "partition", next_offset FROM flow_progress ORDER BY flow, topic, "partition"
"""
MAX_DEAD_LETTER_ID = "SELECT coalesce(max(id), 0) FROM dead_letters"
COUNT_DEAD_LETTERS_AFTER = "SELECT count(*), coalesce(max(id), %(after)s) FROM dead_letters WHERE id > %(after)s"


def read_flow_progress(conn: psycopg.Connection) -> list[tuple[str, str, int, int]] | None:
    """Committed progress of every flow; None when the table does not exist (yet)."""
    try:
        with conn.transaction():
            return [tuple(r) for r in conn.execute(READ_FLOW_PROGRESS).fetchall()]
    except psycopg.errors.UndefinedTable:
        return None


def high_watermarks(consumer: Consumer, parts: list[tuple[str, int]],
                    timeout: float = 5.0) -> dict[tuple[str, int], int]:
    marks = {}
    for topic, partition in parts:
        _low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition),
                                                    timeout=timeout, cached=False)
        marks[(topic, partition)] = high
    return marks


def new_dead_letters(conn: psycopg.Connection, after_id: int) -> tuple[int, int]:
    """(how many dead letters have an id above `after_id`, the highest id)."""
    with conn.transaction():
        count, last = conn.execute(COUNT_DEAD_LETTERS_AFTER, {"after": after_id}).fetchone()
    return int(count), int(last)


def probe(conn: psycopg.Connection, consumer: Consumer, last_dead_letter_id: int | None,
          now: datetime) -> HealthSample:
    if last_dead_letter_id is None:  # first start: only count what appears from now on
        with conn.transaction():
            last_dead_letter_id = int(conn.execute(MAX_DEAD_LETTER_ID).fetchone()[0])
    new, last_id = new_dead_letters(conn, last_dead_letter_id)
    progress = read_flow_progress(conn)
    lags: list[PartitionLag] = []
    if progress:
        marks = high_watermarks(consumer, sorted({(t, p) for _f, t, p, _o in progress}))
        lags = [PartitionLag(f, t, p, o, marks[(t, p)]) for f, t, p, o in progress]
    return HealthSample(at=now, lags=tuple(lags), dead_letters_new=new,
                        dead_letters_last_id=last_id, progress_available=progress is not None)


def _utcnow() -> datetime:
    return datetime.now(UTC)


class _HealthPartition(StatefulSourcePartition[HealthSample, int | None]):
    def __init__(self, database_url: str, bootstrap: str, interval: timedelta,
                 last_id: int | None, now_getter: Callable[[], datetime]):
        self._database_url = database_url
        self._bootstrap = bootstrap
        self._interval = interval
        self._last_id = last_id
        self._now = now_getter
        self._next_at = now_getter()
        self._conn: psycopg.Connection | None = None
        self._consumer = Consumer({
            "bootstrap.servers": bootstrap,
            "group.id": "fte-metrics-health",  # never subscribes or commits
            "enable.auto.commit": False,
        })

    def next_batch(self) -> list[HealthSample]:
        now = self._now()
        if now < self._next_at:
            return []
        self._next_at = now + self._interval
        try:
            if self._conn is None or self._conn.closed:
                self._conn = psycopg.connect(self._database_url, autocommit=True, connect_timeout=5)
            sample = probe(self._conn, self._consumer, self._last_id, now)
        except Exception as exc:  # noqa: BLE001 -- a failed probe is logged and retried next interval
            log.warning("health.probe_failed", error=str(exc))
            if self._conn is not None:
                self._conn.close()
                self._conn = None
            return []
        self._last_id = sample.dead_letters_last_id
        return [sample]

    def next_awake(self) -> datetime | None:
        # Wake at least every 200 ms even between polls: an input that sleeps holds back the
        # dataflow's epochs, and with them every stateful step downstream (measured: events
        # waited up to the whole poll interval).
        return min(self._next_at, self._now() + AWAKE_AT_LEAST_EVERY)

    def snapshot(self) -> int | None:
        return self._last_id

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
        self._consumer.close()


class HealthSource(FixedPartitionedSource[HealthSample, int | None]):
    """One partition (one worker) samples lag and dead letters every `interval`."""

    def __init__(self, database_url: str, bootstrap: str, interval: timedelta,
                 now_getter: Callable[[], datetime] = _utcnow):
        self.database_url = database_url
        self.bootstrap = bootstrap
        self.interval = interval
        self.now_getter = now_getter

    def list_parts(self) -> list[str]:
        return ["health"]

    def build_part(self, step_id: str, for_part: str, resume_state: int | None) -> _HealthPartition:
        return _HealthPartition(self.database_url, self.bootstrap, self.interval, resume_state,
                                self.now_getter)
