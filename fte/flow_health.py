"""Liveness and metrics for a Bytewax dataflow process.

`instrument_flow` adds a heartbeat input to a built dataflow: a dynamic source whose
`next_batch` runs on every worker's own loop and beats the process's heartbeat. A worker
stuck in a step (a hung Postgres call, an agent that never returns) stops calling its
sources, so the beat stops and `/livez` turns 503; a quiet topic does not (the source is
polled on its schedule whether or not messages arrive).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.inputs import DynamicSource, StatelessSourcePartition

from fte import observability


class _BeatPartition(StatelessSourcePartition[None]):
    def __init__(self, interval: timedelta, worker: int):
        self.interval = interval
        self.loop = f"worker-{worker}"
        self._next = datetime.now(UTC)

    def next_batch(self) -> list[None]:
        observability.ready(loop=self.loop)  # this worker runs the dataflow: ready, and a beat
        self._next = datetime.now(UTC) + self.interval
        return []

    def next_awake(self) -> datetime:
        return self._next


class HeartbeatSource(DynamicSource[None]):
    """Emits nothing; each worker's partition beats once per `interval`."""

    def __init__(self, interval: timedelta):
        self.interval = interval

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _BeatPartition:
        return _BeatPartition(self.interval, worker_index)


def instrument_flow(flow: Dataflow, service: str, settings, recovery_dir: Path | None = None) -> Dataflow:
    """Start the exporter, add the heartbeat input, watch the recovery partitions."""
    observability.serve(service, settings)
    observability.record_uptime(service, settings)
    observability.watch_recovery(service, recovery_dir)
    beats = op.input("heartbeat", flow, HeartbeatSource(observability.heartbeat_interval(settings)))
    # The stream is empty; an inspect keeps it a complete branch of the graph.
    op.inspect("heartbeat_sink", beats, lambda *_: None)
    return flow
