"""`fte notify`: tell staff about escalations and alerts (email and a Slack-compatible webhook).

Consumes support.escalations and support.alerts (consumer group `<prefix>fte-notify`),
turns each event into notices by `flows/notify.yaml` (flows/notify_rules.py) and sends each
once (sinks/notifications.py). Offsets are committed after the notices are recorded, so a
crash replays events, which the dedupe table absorbs.
"""

from __future__ import annotations

import signal
import threading
import time
from datetime import UTC, datetime

from fte.logs import get_logger

log = get_logger(__name__)


def register(subparsers) -> None:
    p = subparsers.add_parser("notify", help="notify staff of escalations and alerts (email, Slack webhook)")
    p.add_argument("--group", default="fte-notify", help="Kafka consumer group")
    p.set_defaults(func=run)


def emails(settings) -> list[str]:
    return [a.strip() for a in settings.NOTIFY_EMAIL_TO.split(",") if a.strip()]


def handle(raw: bytes, topic: str, *, topics: dict[str, str], config, settings, notifier, conn) -> int:
    """One Kafka message -> notices sent; returns how many were sent now."""
    from flows.notify_rules import alert_notices, escalation_notices, is_stale
    from fte import observability
    from schema.events import Alert, Escalation

    try:
        if topic == topics["escalations"]:
            notices = escalation_notices(Escalation.model_validate_json(raw), config, emails(settings))
        else:
            alert = Alert.model_validate_json(raw)
            observability.ALERTS_RAISED.labels(alert.kind).inc()
            notices = alert_notices(alert, config, emails(settings))
    except ValueError as exc:
        log.warning("notify.bad_event", topic=topic, error=str(exc)[:200])
        return 0
    sent = 0
    now = datetime.now(UTC)
    for notice in notices:
        if is_stale(notice, now, config):
            observability.NOTIFICATIONS.labels(notice.target, "stale").inc()
            continue
        sent += notifier.send(conn, notice)
    return sent


def run(args, settings) -> int:
    import psycopg
    from confluent_kafka import Consumer

    from flows.notify_rules import load_notify_config
    from fte import observability
    from fte.kafka import ensure_topics
    from schema.topics import ALERTS, ESCALATIONS, topic_name
    from sinks.notifications import Notifier

    ensure_topics(settings.kafka_bootstrap, settings.TOPIC_PREFIX, [ESCALATIONS, ALERTS])
    observability.serve("notify", settings)
    observability.record_uptime("notify", settings)
    config = load_notify_config(settings.NOTIFY_CONFIG_FILE)
    topics = {"escalations": topic_name(ESCALATIONS, settings.TOPIC_PREFIX),
              "alerts": topic_name(ALERTS, settings.TOPIC_PREFIX)}
    slack = settings.NOTIFY_SLACK_WEBHOOK_URL.get_secret_value() if settings.NOTIFY_SLACK_WEBHOOK_URL else None
    notifier = Notifier(settings.database_url, slack)
    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap,
                         "group.id": f"{settings.TOPIC_PREFIX}{args.group}",
                         "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    consumer.subscribe(list(topics.values()))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    log.info("notify.start", topics=list(topics.values()), slack=bool(slack), emails=len(emails(settings)))
    conn = None
    last_retry = 0.0
    try:
        while not stop.is_set():
            observability.beat()
            if conn is None or conn.closed:
                conn = psycopg.connect(settings.database_url, autocommit=True)
                observability.ready()
            # consume() waits for the timeout unless 100 arrive: short, so a notice waits little.
            messages = consumer.consume(100, timeout=0.25)
            try:
                for msg in messages:
                    if msg.error() is None:
                        handle(msg.value(), msg.topic(), topics=topics, config=config,
                               settings=settings, notifier=notifier, conn=conn)
                if messages:
                    consumer.commit(asynchronous=False)
                if time.monotonic() - last_retry > 30:
                    notifier.retry_failed(conn)
                    last_retry = time.monotonic()
            except psycopg.OperationalError as exc:
                # Not committed: these events come again after the seek below.
                log.warning("notify.db_error", error=str(exc))
                conn.close()
                for part in consumer.assignment():
                    committed = consumer.committed([part], timeout=10)[0]
                    if committed.offset >= 0:
                        consumer.seek(committed)
                stop.wait(1.0)
    finally:
        consumer.close()
        if conn is not None:
            conn.close()
    log.info("notify.stopped")
    return 0
