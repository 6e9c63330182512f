"""`fte relay`: publish the event outbox (support events, escalations) to Kafka until stopped."""

from __future__ import annotations

import signal
import threading

from fte.logs import get_logger

log = get_logger(__name__)


def register(subparsers) -> None:
    p = subparsers.add_parser("relay", help="publish event-outbox rows to Kafka")
    p.set_defaults(func=run)


def run(args, settings) -> int:
    from fte.kafka import ensure_topics
    from schema.topics import ESCALATIONS, SUPPORT_EVENTS
    from sinks.event_relay import build_relay

    ensure_topics(settings.kafka_bootstrap, settings.TOPIC_PREFIX, [SUPPORT_EVENTS, ESCALATIONS])
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    from fte import observability

    observability.serve("relay", settings)  # /metrics, /livez (the relay loop's heartbeat)
    observability.record_uptime("relay", settings)
    relay = build_relay(settings).start()
    log.info("relay.start")
    stop.wait()
    relay.stop()
    log.info("relay.stopped", events=relay.published)
    return 0
