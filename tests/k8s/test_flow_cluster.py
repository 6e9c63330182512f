"""Run a real two-process Bytewax cluster the way the flow StatefulSet does.

Each "pod" is a `python -m bytewax.run` process given the StatefulSet's BYTEWAX_* env, with
the peer addresses pointed at 127.0.0.1 and its recovery volume prepared by the init
container's script. The processes must find each other, split the work, and on a second
execution resume from their recovery partitions without repeating output.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "k8s"
FLOW = Path(__file__).with_name("cluster_flow.py")


def _statefulset(name: str) -> dict:
    docs = yaml.safe_load_all((K8S / f"{name}.yaml").read_text())
    return next(d for d in docs if d["kind"] == "StatefulSet")


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _run_cluster(sts: dict, root: Path, out: Path) -> list[subprocess.CompletedProcess]:
    name = sts["metadata"]["name"]
    replicas = sts["spec"]["replicas"]
    container = sts["spec"]["template"]["spec"]["containers"][0]
    init = sts["spec"]["template"]["spec"]["initContainers"][0]
    env_spec = {e["name"]: e.get("value") for e in container["env"]}
    ports = _free_ports(replicas)
    procs = []
    for ordinal in range(replicas):
        pod = f"{name}-{ordinal}"
        recovery = root / pod / "recovery"
        # The init container's command, with the pod's volume at `root/pod`.
        argv = [a.replace(env_spec["BYTEWAX_RECOVERY_DIRECTORY"], str(recovery)) for a in init["command"]]
        argv[1] = str(K8S / "flow-recovery-init.py")
        subprocess.run([sys.executable, *argv[1:], "--pod-name", pod], check=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("BYTEWAX_")}
        env.update({k: v for k, v in env_spec.items() if k.startswith("BYTEWAX_") and v})
        env.update(
            BYTEWAX_POD_NAME=pod,
            BYTEWAX_ADDRESSES=";".join(f"127.0.0.1:{p}" for p in ports),
            BYTEWAX_RECOVERY_DIRECTORY=str(recovery),
            FLOW_OUT=str(out),
        )
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "bytewax.run", f"{FLOW}:flow"],
            env=env, cwd=root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    results = []
    for proc in procs:
        stdout, _ = proc.communicate(timeout=120)
        results.append(subprocess.CompletedProcess(proc.args, proc.returncode, stdout))
    return results


def _lines(out: Path) -> list[str]:
    return [line for f in sorted(out.glob("*.txt")) for line in f.read_text().splitlines()]


def test_support_flow_env_runs_a_two_process_cluster_and_resumes(tmp_path):
    sts = _statefulset("support-flow")
    assert sts["spec"]["replicas"] == 2
    out = tmp_path / "out"
    out.mkdir()
    for result in _run_cluster(sts, tmp_path, out):
        assert result.returncode == 0, result.stdout
    lines = _lines(out)
    numbers = sorted(int(line.split()[0]) for line in lines)
    assert numbers == list(range(240)), "every item exactly once"
    # State is per key: each of the 16 keys counted its 15 items, once each.
    counts = sorted(int(line.split()[1]) for line in lines if int(line.split()[0]) % 16 == 0)
    assert counts == list(range(1, 16))
    # Work was spread: each process owned some keys and wrote their output.
    assert {f.name.rsplit("-", 1)[0] for f in out.glob("*.txt")} == {"support-flow-0", "support-flow-1"}

    # Second execution on the same volumes: the input is exhausted in the snapshot, so the
    # cluster resumes at the end and writes nothing again.
    for result in _run_cluster(sts, tmp_path, out):
        assert result.returncode == 0, result.stdout
    assert len(_lines(out)) == 240
