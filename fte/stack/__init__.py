"""The embedded local stack: Apache Kafka (KRaft) and Postgres 16 + pgvector.

Each service is a detached process with its data, logs and pid under FTE_DATA_DIR, so
`fte stack down` stops exactly what `up` started, and data survives restarts. When
KAFKA_BOOTSTRAP_SERVERS / DATABASE_URL are set, the matching embedded service is skipped.
"""

from __future__ import annotations

from dataclasses import dataclass

from fte.settings import Settings


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    up: bool
    address: str
    embedded: bool
    detail: str = ""


def up(settings: Settings) -> list[ServiceStatus]:
    from fte.stack import kafka, postgres

    if settings.embedded_postgres:
        postgres.EmbeddedPostgres(settings).start()
    if settings.embedded_kafka:
        kafka.EmbeddedKafka(settings).start()
    return status(settings)


def down(settings: Settings) -> list[ServiceStatus]:
    from fte.stack import kafka, postgres

    if settings.embedded_kafka:
        kafka.EmbeddedKafka(settings).stop()
    if settings.embedded_postgres:
        postgres.EmbeddedPostgres(settings).stop()
    return status(settings)


def status(settings: Settings) -> list[ServiceStatus]:
    from fte.stack import kafka, postgres

    return [kafka.status(settings), postgres.status(settings)]
