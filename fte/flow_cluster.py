"""`fte flow --processes P`: the support flow as a Bytewax cluster of P processes on loopback.

Each process is `python -m bytewax.run flows.support:flow` with the same BYTEWAX_* variables
the Kubernetes StatefulSet gives its pods (pod name with ordinal, peer addresses, workers per
process, recovery directory, snapshot interval), and its own recovery directory holding its
share of the partitions (as k8s/flow-recovery-init.py gives each pod). Bytewax stops the whole
cluster when one process dies; this supervisor then restarts all of them, and they resume
from their recovery partitions (the flow's writes are idempotent, so nothing is answered twice).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from fte.logs import get_logger

log = get_logger(__name__)
STATEFULSET = "support-flow"


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def prepare_partitions(directory: Path, ordinal: int, processes: int, partitions: int) -> None:
    """Partitions ordinal, ordinal + processes, ... of `partitions`, created once."""
    from bytewax.recovery import init_db_dir

    directory.mkdir(parents=True, exist_ok=True)
    if any(directory.glob("part-*.sqlite3")):
        return  # the state to resume from
    with tempfile.TemporaryDirectory(dir=directory, prefix=".init-") as tmp:
        init_db_dir(Path(tmp), partitions)
        for index in range(ordinal, partitions, processes):
            os.replace(Path(tmp) / f"part-{index}.sqlite3", directory / f"part-{index}.sqlite3")


def cluster_env(ordinal: int, ports: list[int], workers: int, recovery: Path, snapshot_s: float) -> dict:
    return {
        "BYTEWAX_POD_NAME": f"{STATEFULSET}-{ordinal}",
        "BYTEWAX_STATEFULSET_NAME": STATEFULSET,
        "BYTEWAX_ADDRESSES": ";".join(f"127.0.0.1:{p}" for p in ports),
        "BYTEWAX_WORKERS_PER_PROCESS": str(workers),
        "BYTEWAX_RECOVERY_DIRECTORY": str(recovery),
        "BYTEWAX_SNAPSHOT_INTERVAL": str(max(1, round(snapshot_s))),  # whole seconds
        "BYTEWAX_RECOVERY_BACKUP_INTERVAL": "0",
    }


def run_cluster(settings, *, processes: int, workers: int, recovery_root: Path) -> int:
    partitions = processes * workers
    dirs = [recovery_root / f"process-{i}" for i in range(processes)]
    for i, d in enumerate(dirs):
        prepare_partitions(d, i, processes, partitions)
    stopping = False

    def stop(*_):
        nonlocal stopping
        stopping = True
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    while not stopping:
        ports = free_ports(processes)
        procs = []
        for i, d in enumerate(dirs):
            env = {k: v for k, v in os.environ.items() if not k.startswith("BYTEWAX_")}
            env.update(cluster_env(i, ports, workers, d, settings.RECOVERY_SNAPSHOT_S))
            procs.append(subprocess.Popen([sys.executable, "-m", "bytewax.run", "flows.support:flow"],
                                          env=env))
        log.info("flow_cluster.start", processes=processes, workers=workers,
                 pids=[p.pid for p in procs])
        while not stopping and all(p.poll() is None for p in procs):
            time.sleep(0.2)
        if not stopping:
            # One process died (or the cluster stopped): Bytewax cannot go on without it.
            log.warning("flow_cluster.restart", codes=[p.poll() for p in procs])
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
        deadline = time.monotonic() + 20
        for p in procs:
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        if not stopping:
            time.sleep(1)
    log.info("flow_cluster.stopped")
    return 0
