"""The console's one data module: connections cached per process, reads cached briefly.

Every read goes through `_fetch` (a DataFrame, cached for a few seconds and keyed by the
database URL too); actions call `invalidate()` so the page shows their effect at once.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
import psycopg
import streamlit as st
from confluent_kafka import Consumer, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient

from fte.kafka import idempotent_producer
from fte.settings import Settings, get_settings
from schema import db
from schema.identity import InvalidIdentifier, normalize_email, normalize_phone
from schema.queries import console as q
from schema.queries import services as services_q
from schema.topics import ALL_TOPICS, topic_name

READ_TTL_S = 5
CHANNELS = ["email", "whatsapp", "web"]


def settings() -> Settings:
    return get_settings()


# --- connections -------------------------------------------------------------------------
@st.cache_resource(show_spinner=False)
def _pool(url: str):
    return db.pool(url, max_size=4)


def connection():
    """A pooled connection (rows as dicts); use as a context manager."""
    return _pool(settings().database_url).connection()


@st.cache_resource(show_spinner=False)
def producer(bootstrap: str):
    return idempotent_producer(bootstrap, **{"message.timeout.ms": 5_000})


@st.cache_resource(show_spinner=False)
def _admin(bootstrap: str) -> AdminClient:
    return AdminClient({"bootstrap.servers": bootstrap, "socket.timeout.ms": 3_000})


@st.cache_resource(show_spinner=False)
def _watermark_consumer(bootstrap: str) -> Consumer:
    # Never subscribes or commits: only asks partition leaders for their high watermarks.
    return Consumer({"bootstrap.servers": bootstrap, "group.id": "fte-console-watermarks",
                     "enable.auto.commit": False, "socket.timeout.ms": 3_000})


@st.cache_data(ttl=READ_TTL_S, show_spinner=False)
def _fetch(sql: str, params: dict[str, Any], url: str) -> tuple[list[str], list[dict[str, Any]]]:
    with _pool(url).connection() as conn:
        cur = conn.execute(sql, params)
        return [c.name for c in cur.description], cur.fetchall()


def frame(sql: str, **params: Any) -> pd.DataFrame:
    columns, rows = _fetch(sql, params, settings().database_url)
    return pd.DataFrame(rows, columns=columns)


def row(sql: str, **params: Any) -> dict[str, Any] | None:
    """The first row as plain Python values (None stays None), or None."""
    _columns, rows = _fetch(sql, params, settings().database_url)
    return dict(rows[0]) if rows else None


def invalidate() -> None:
    _fetch.clear()


def since(hours: float) -> datetime:
    return datetime.now(UTC) - timedelta(hours=hours)


def table_exists(name: str) -> bool:
    return bool(row(q.TABLE_EXISTS, name=name)["present"])


# --- overview ----------------------------------------------------------------------------
def kpis_today() -> dict[str, Any]:
    return row(q.KPIS_TODAY) or {}


def volume_since(hours: float) -> pd.DataFrame:
    return frame(q.VOLUME_SINCE, since=since(hours))


def escalations_by_reason_today() -> pd.DataFrame:
    return frame(q.ESCALATIONS_BY_REASON_TODAY)


def inbound_by_channel_today() -> pd.DataFrame:
    return frame(q.INBOUND_BY_CHANNEL_TODAY)


def recent_alerts(limit: int = 10) -> pd.DataFrame:
    return frame(q.RECENT_ALERTS, limit=limit)


def crash_loops(hours: float = 1.0) -> pd.DataFrame:
    return frame(services_q.CRASH_LOOPS_SINCE, since=since(hours))


# --- SLA ---------------------------------------------------------------------------------
def p95_since(hours: float) -> pd.DataFrame:
    return frame(q.P95_SINCE, since=since(hours))


def sla_breaches_since(hours: float) -> pd.DataFrame:
    return frame(q.SLA_BREACHES_SINCE, since=since(hours))


def sla_counts_since(hours: float) -> pd.DataFrame:
    return frame(q.SLA_COUNTS_SINCE, since=since(hours))


# --- escalations -------------------------------------------------------------------------
def escalation_queue(statuses: list[str], reasons: list[str], channels: list[str],
                     min_age_s: float = 0.0) -> pd.DataFrame:
    return frame(q.ESCALATION_QUEUE, statuses=statuses, reasons=reasons, channels=channels,
                 min_age_s=float(min_age_s))


def escalation_reasons_seen() -> list[str]:
    return frame(q.ESCALATION_REASONS_SEEN)["reason"].tolist()


def escalation(escalation_id: int) -> dict[str, Any] | None:
    return row(q.ESCALATION, id=int(escalation_id))


def messages_since_escalation(esc: dict[str, Any]) -> pd.DataFrame:
    return frame(q.MESSAGES_SINCE_ESCALATION, customer_id=int(esc["customer_id"]),
                 since=esc["created_at"], escalation_id=int(esc["id"]),
                 inbound_key=esc["inbound_key"])


def acks_of_escalation(esc: dict[str, Any]) -> pd.DataFrame:
    return frame(q.ACKS_OF_ESCALATION, inbound_key=esc["inbound_key"], escalation_id=int(esc["id"]))


# --- customers ---------------------------------------------------------------------------
def search_customers(text: str) -> pd.DataFrame:
    """By email, phone (any format) or name; identifiers also match by prefix."""
    text = text.strip()
    try:
        email = normalize_email(text)
    except InvalidIdentifier:
        email = ""
    try:
        phone = normalize_phone(text, default_region=settings().DEFAULT_PHONE_REGION)
    except InvalidIdentifier:
        phone = ""
    escaped = text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return frame(q.SEARCH_CUSTOMERS, prefix=f"{escaped}%", email=email, phone=phone,
                 name=f"%{escaped}%")


def customer(customer_id: int) -> dict[str, Any] | None:
    return row(q.CUSTOMER, id=int(customer_id))


def identifiers(customer_id: int) -> pd.DataFrame:
    return frame(q.IDENTIFIERS_OF, customer_id=int(customer_id))


def merges(customer_id: int) -> pd.DataFrame:
    return frame(q.MERGES_OF, id=int(customer_id))


def timeline(customer_id: int, limit: int = 200) -> pd.DataFrame:
    return frame(q.TIMELINE, id=int(customer_id), limit=limit)


def tickets_of(customer_id: int) -> pd.DataFrame:
    return frame(q.TICKETS_OF, id=int(customer_id))


def escalations_of(customer_id: int) -> pd.DataFrame:
    return frame(q.ESCALATIONS_OF, id=int(customer_id))


# --- knowledge base ----------------------------------------------------------------------
def kb_articles(query: str = "") -> pd.DataFrame:
    query = query.strip()
    escaped = query.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return frame(q.KB_ARTICLES, query=query, like=f"%{escaped}%")


def kb_article(slug: str) -> pd.DataFrame:
    return frame(q.KB_ARTICLE, slug=slug)


@st.cache_resource(show_spinner=False)
def _embedder(signature: str):
    from flows.embeddings import build_embedder

    return build_embedder(settings())


def kb_ask(question: str, k: int = 5) -> pd.DataFrame:
    """The agent's own hybrid retrieval (vector + full text) for a question: what it would use."""
    from flows import knowledge

    s = settings()
    embedder = _embedder(f"{s.OPENAI_EMBEDDING_MODEL if s.OPENAI_API_KEY else 'hashing'}:{s.EMBEDDING_DIM}")
    with connection() as conn:
        hits = knowledge.search(conn, question, embedder=embedder, k=k)
    return pd.DataFrame([{"slug": h.slug, "title": h.title, "score": h.score, "chunk": h.body[:160]}
                         for h in hits], columns=["slug", "title", "score", "chunk"])


def kb_top_answering(days: float = 7, limit: int = 15) -> pd.DataFrame:
    return frame(q.KB_TOP_ANSWERING, since=since(24 * days), limit=limit)


def kb_unanswered(days: float = 7, limit: int = 100) -> pd.DataFrame:
    return frame(q.KB_UNANSWERED, since=since(24 * days), limit=limit)


# --- dead letters ------------------------------------------------------------------------
def dead_letters(include_replayed: bool = False) -> pd.DataFrame:
    return frame(q.DEAD_LETTERS, include_replayed=include_replayed)


def dead_letter(dead_letter_id: int) -> dict[str, Any] | None:
    return row(q.DEAD_LETTER, id=int(dead_letter_id))


def dead_letters_by_reason() -> pd.DataFrame:
    return frame(q.DEAD_LETTERS_BY_REASON)


# --- system ------------------------------------------------------------------------------
def postgres_health() -> dict[str, Any]:
    try:
        return {"up": True, **(row(q.POSTGRES_HEALTH) or {})}
    except psycopg.Error as exc:  # the page reports it rather than failing
        return {"up": False, "error": f"{type(exc).__name__}: {exc}"}


@st.cache_data(ttl=READ_TTL_S, show_spinner=False)
def kafka_health(bootstrap: str) -> dict[str, Any]:
    try:
        meta = _admin(bootstrap).list_topics(timeout=3)
    except KafkaException as exc:
        return {"up": False, "error": f"{type(exc).__name__}: {exc}"}
    return {
        "up": True,
        "cluster_id": meta.cluster_id,
        "brokers": sorted(f"{b.host}:{b.port}" for b in meta.brokers.values()),
        "partitions": {name: len(t.partitions) for name, t in meta.topics.items()
                       if not name.startswith("__")},
    }


def flow_progress() -> pd.DataFrame:
    if not table_exists("flow_progress"):
        return pd.DataFrame(columns=["flow", "topic", "partition", "next_offset", "updated_at"])
    return frame(q.FLOW_PROGRESS)


@st.cache_data(ttl=READ_TTL_S, show_spinner=False)
def high_watermarks(bootstrap: str, partitions: tuple[tuple[str, int], ...]) -> dict[tuple[str, int], int | None]:
    consumer = _watermark_consumer(bootstrap)
    marks: dict[tuple[str, int], int | None] = {}
    for topic, partition in partitions:
        try:
            _low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition),
                                                        timeout=3, cached=False)
            marks[(topic, partition)] = high
        except KafkaException:
            marks[(topic, partition)] = None
    return marks


def consumer_lag() -> pd.DataFrame:
    """Lag per partition = broker high watermark - the flow's next offset (flow_progress).

    Our topics a flow has not recorded progress for yet show with next_offset 0.
    """
    s = settings()
    progress = flow_progress()
    rows = [dict(r) for r in progress.to_dict("records")]
    health = kafka_health(s.kafka_bootstrap)
    if health.get("up"):
        known = {(r["topic"], int(r["partition"])) for r in rows}
        inbound = [topic_name(t, s.TOPIC_PREFIX) for t in ALL_TOPICS if t.name.startswith("channel.")]
        flows_of_topic = {r["topic"]: r["flow"] for r in rows}
        for name in inbound:
            for p in range(health["partitions"].get(name, 0)):
                if (name, p) not in known:
                    rows.append({"flow": flows_of_topic.get(name, "support"), "topic": name,
                                 "partition": p, "next_offset": 0, "updated_at": None})
    if not rows:
        return pd.DataFrame(columns=["flow", "topic", "partition", "next_offset", "high_watermark", "lag", "updated_at"])
    marks = high_watermarks(s.kafka_bootstrap, tuple(sorted({(r["topic"], int(r["partition"])) for r in rows})))
    for r in rows:
        high = marks.get((r["topic"], int(r["partition"])))
        r["high_watermark"] = high
        r["lag"] = None if high is None or high < 0 else max(0, high - int(r["next_offset"]))
    df = pd.DataFrame(rows)
    return df[["flow", "topic", "partition", "next_offset", "high_watermark", "lag", "updated_at"]]


def outbox_by_channel() -> pd.DataFrame:
    return frame(q.OUTBOX_BY_CHANNEL)


def breakers() -> pd.DataFrame:
    return frame(q.BREAKERS)


@st.cache_data(ttl=READ_TTL_S, show_spinner=False)
def intake() -> dict[str, dict]:
    """Per channel: is intake ok (messages arriving or nothing due), last message, last
    push/webhook, Gmail cursor against the mailbox and the watch expiry (fte/intake.py)."""
    from fte.intake import read_intake_sync

    with connection() as conn:
        return read_intake_sync(conn, settings())


def recent_audit(limit: int = 20) -> pd.DataFrame:
    return frame(q.RECENT_AUDIT, limit=limit)


def delivery_states(outbox: pd.DataFrame) -> pd.DataFrame:
    """Per channel, whether replies are getting through, read from the outbox (the dispatcher
    keeps its circuit breakers in memory): 'failing' when a reply is parked or failed and
    nothing was sent since it was queued, 'retrying' when some are parked but sends continue."""
    rows = []
    for r in outbox.to_dict("records"):
        stuck = int(r["parked"]) + int(r["failed"])
        if not stuck:
            state = "ok"
        elif r["last_sent_at"] is None or pd.isna(r["last_sent_at"]) or r["last_sent_at"] < r["last_stuck_at"]:
            state = "failing"
        else:
            state = "retrying"
        rows.append({"channel": r["channel"], "state": state, "stuck": stuck,
                     "last_error": r["last_error"]})
    return pd.DataFrame(rows, columns=["channel", "state", "stuck", "last_error"])
