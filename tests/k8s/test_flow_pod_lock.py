"""A flow pod's process holds its recovery volume's lock, like `fte metrics-flow` does.

The metrics StatefulSet's container command (k8s/flow_entry.py), run for real against the
stack with its volume prepared by the init container's script: a second process on the same
volume (an operator's `kubectl exec ... fte metrics-flow`, or a second pod process) is refused
with exit 3 and a clear message; SIGTERM (the pod stopping) ends without a traceback.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import yaml
from testkit import wait_for

from fte.dataflow_runner import EXIT_STORE_IN_USE
from fte.kafka import ensure_topics
from fte.recovery_store import LOCK_NAME

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "k8s"


def _container_and_init(name: str) -> tuple[list[str], list[str], str]:
    docs = yaml.safe_load_all((K8S / f"{name}.yaml").read_text())
    pod = next(d for d in docs if d["kind"] == "StatefulSet")["spec"]["template"]["spec"]
    config = next(d for d in yaml.safe_load_all((K8S / "config.yaml").read_text()))["data"]
    return pod["containers"][0]["command"], pod["initContainers"][0]["command"], config["RECOVERY_DIR"]


def test_the_metrics_pod_holds_its_volume_and_a_second_process_is_refused(stack, tmp_path):
    command, init, recovery_dir = _container_and_init("metrics-flow")
    assert command[1].endswith("/flow_entry.py") and "metrics" in command
    volume = tmp_path / "recovery"  # the pod's volume, at RECOVERY_DIR
    init_argv = [a.replace(recovery_dir, str(volume)) for a in init[2:]]
    subprocess.run([sys.executable, str(K8S / "flow-recovery-init.py"), *init_argv,
                    "--pod-name", "metrics-flow-0"], check=True)
    prefix = f"t{uuid.uuid4().hex[:10]}."
    ensure_topics(stack.kafka_bootstrap, prefix)
    env = {**os.environ, "DATABASE_URL": stack.database_url, "KAFKA_BOOTSTRAP_SERVERS": stack.kafka_bootstrap,
           "TOPIC_PREFIX": prefix, "RECOVERY_DIR": str(volume), "POD_NAME": "metrics-flow-0",
           "LOG_LEVEL": "WARNING"}
    argv = [sys.executable, str(K8S / "flow_entry.py"), *command[2:]]  # the container's arguments
    pod = subprocess.Popen(argv, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        def holding() -> bool:
            assert pod.poll() is None, pod.communicate()[1][-3000:]
            lock = volume / LOCK_NAME
            return lock.exists() and lock.read_text().strip() == str(pod.pid)
        wait_for(holding, 120, "the pod's process to hold its recovery volume")
        for stray_argv in ([sys.executable, "-m", "fte.cli", "metrics-flow", "--recovery-dir", str(volume)], argv):
            stray = subprocess.run(stray_argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=180)
            assert stray.returncode == EXIT_STORE_IN_USE, stray.stderr[-2000:]
            assert f"in use by another process (pid {pod.pid})" in stray.stderr
            assert "Traceback" not in stray.stderr
        assert pod.poll() is None  # the running one is untouched
    finally:
        pod.send_signal(signal.SIGTERM)
        _out, err = pod.communicate(timeout=60)
    assert pod.returncode == 0 and "Traceback" not in err, err[-2000:]
