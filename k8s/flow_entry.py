"""Run one process of a flow's Bytewax cluster in a StatefulSet pod.

    python /etc/fte/flow-scripts/flow_entry.py support --processes 2

The pod's place in the cluster comes from Kubernetes and the settings, not from copies of
them in the manifest: the process id is the pod's ordinal (`support-flow-1` is process 1),
the peers are `<statefulset>-<i>.<service>:<port>` for i < --processes (short names: the
pod's DNS search path adds the namespace and cluster domain, whatever they are), workers per
process FLOW_WORKERS, recovery RECOVERY_DIR with RECOVERY_SNAPSHOT_S / RECOVERY_BACKUP_S.
The process also serves /metrics, /livez and /readyz (fte.observability) on its port.

`support()` and `metrics()` build the dataflows exactly as `fte flow` / `fte metrics-flow`.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from bytewax.dataflow import Dataflow

from fte.logs import configure_logging
from fte.settings import get_settings

FLOWS = {"support": "support-flow", "metrics": "metrics-flow"}


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


@dataclass(frozen=True)
class ClusterPlace:
    process_id: int
    addresses: list[str]
    workers_per_process: int
    recovery_dir: Path
    snapshot_interval: timedelta
    backup_interval: timedelta


def cluster_place(pod_name: str, processes: int, settings, *, statefulset: str,
                  service: str | None = None, port: int = 9999) -> ClusterPlace:
    """This pod's process id and peers, from its name and the process count; the rest from settings."""
    prefix, _, ordinal = pod_name.rpartition("-")
    if prefix != statefulset or not ordinal.isdigit():
        raise ValueError(f"pod {pod_name!r} is not a pod of the StatefulSet {statefulset!r}")
    process_id = int(ordinal)
    if not 0 <= process_id < processes:
        raise ValueError(f"pod {pod_name} is outside the cluster of {processes} processes: "
                         "change --processes together with the StatefulSet's replicas")
    service = service or statefulset
    return ClusterPlace(
        process_id=process_id,
        addresses=[f"{statefulset}-{i}.{service}:{port}" for i in range(processes)],
        workers_per_process=settings.FLOW_WORKERS,
        recovery_dir=settings.recovery_dir,
        snapshot_interval=timedelta(seconds=settings.RECOVERY_SNAPSHOT_S),
        backup_interval=timedelta(seconds=settings.RECOVERY_BACKUP_S),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("flow", choices=sorted(FLOWS))
    parser.add_argument("--processes", type=int, required=True, help="the StatefulSet's replicas")
    parser.add_argument("--pod-name", default=os.environ.get("POD_NAME"))
    parser.add_argument("--port", type=int, default=9999, help="Bytewax peer port")
    args = parser.parse_args(argv)
    if not args.pod_name:
        parser.error("--pod-name (or POD_NAME) is required")

    from bytewax._bytewax import cli_main

    from fte.dataflow_runner import run_guarded
    from fte.flow_health import instrument_flow

    settings = get_settings()
    place = cluster_place(args.pod_name, args.processes, settings, statefulset=FLOWS[args.flow],
                          port=args.port)
    flow = support() if args.flow == "support" else metrics()
    instrument_flow(flow, FLOWS[args.flow], settings, place.recovery_dir)
    # A single process needs no peers (and so no DNS for its own name).
    cluster = args.processes > 1
    # The same lock and exit codes as `fte flow` / `fte metrics-flow` (fte/dataflow_runner.py):
    # a second process on this pod's volume (`kubectl exec ... fte metrics-flow`) is refused
    # with exit 3, a store that cannot be resumed exits 4 naming the reset command. The
    # partitions are the init container's (k8s/flow-recovery-init.py), so none are created here.
    return run_guarded(lambda recovery: cli_main(
        flow,
        workers_per_process=place.workers_per_process,
        process_id=place.process_id if cluster else None,
        addresses=place.addresses if cluster else None,
        epoch_interval=place.snapshot_interval,
        recovery_config=recovery,
    ), name=args.flow, directory=place.recovery_dir, settings=settings)


if __name__ == "__main__":
    sys.exit(main())
