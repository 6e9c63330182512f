"""Dataflow factories for `python -m bytewax.run`, used by the flow StatefulSets.

`fte flow` and `fte metrics-flow` run one process on one machine; in the
cluster `bytewax.run` runs the same dataflows, taking each pod's process id, peers and
recovery settings from the BYTEWAX_* environment. Mounted from the ConfigMap
`fte-flow-scripts`:

    python -m bytewax.run /etc/fte/flow-scripts/flow_entry.py:support()
    python -m bytewax.run /etc/fte/flow-scripts/flow_entry.py:metrics()
"""

from __future__ import annotations

from bytewax.dataflow import Dataflow

from fte.logs import configure_logging
from fte.settings import get_settings


def metrics() -> Dataflow:
    """The metrics flow exactly as `fte metrics-flow` builds it."""
    from flows.metrics import build_kafka_flow
    from flows.sla import load_sla_config

    settings = get_settings()
    configure_logging(settings.LOG_LEVEL)
    return build_kafka_flow(settings, load_sla_config(settings.SLA_CONFIG_FILE))


def support() -> Dataflow:
    """The support flow exactly as `fte flow` builds it."""
    from flows.support import build_kafka_flow

    settings = get_settings()
    configure_logging(settings.LOG_LEVEL)
    return build_kafka_flow(settings)
