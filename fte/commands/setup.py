"""`fte migrate` and `fte topics`: idempotent schema and topic set-up."""

from __future__ import annotations

from fte.kafka import ensure_topics
from schema.migrate import migrate


def register(subparsers) -> None:
    p = subparsers.add_parser("migrate", help="apply pending SQL migrations (idempotent)")
    p.set_defaults(func=run_migrate)
    p = subparsers.add_parser("topics", help="create the Kafka topics (idempotent)")
    p.set_defaults(func=run_topics)


def run_migrate(args, settings) -> int:
    applied = migrate(settings.database_url)
    print(f"applied {len(applied)} migration(s)" + "".join(f"\n  {m.version:03d} {m.name}" for m in applied))
    return 0


def run_topics(args, settings) -> int:
    created = ensure_topics(settings.kafka_bootstrap, settings.TOPIC_PREFIX)
    print(f"created {len(created)} topic(s)" + "".join(f"\n  {t}" for t in created))
    return 0
