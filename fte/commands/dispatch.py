"""`fte dispatch`: deliver the reply outbox (Gmail, Twilio WhatsApp, web) until stopped."""

from __future__ import annotations

import signal
import threading

from fte.logs import get_logger

log = get_logger(__name__)


def register(subparsers) -> None:
    p = subparsers.add_parser("dispatch", help="deliver queued replies to the channel APIs")
    p.set_defaults(func=run)


def run(args, settings) -> int:
    from fte import observability
    from fte.kafka import ensure_topics
    from schema.topics import SUPPORT_EVENTS
    from sinks.dispatcher import build_dispatcher

    ensure_topics(settings.kafka_bootstrap, settings.TOPIC_PREFIX, [SUPPORT_EVENTS])
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    observability.serve("dispatcher", settings)
    observability.watch_outbox(settings.database_url)
    observability.record_uptime("dispatcher", settings)
    dispatcher = build_dispatcher(settings).start()
    observability.ready()
    log.info("dispatcher.start", channels=list(dispatcher.sender_factories))
    while not stop.wait(5.0):
        observability.beat()
        dispatcher.publish.producer.poll(0)  # type: ignore[attr-defined]
    dispatcher.stop()
    dispatcher.publish.producer.flush(10)  # type: ignore[attr-defined]
    log.info("dispatcher.stopped")
    return 0
