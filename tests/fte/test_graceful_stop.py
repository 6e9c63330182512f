"""Ctrl-C (SIGINT) or SIGTERM stops every long-running service without a traceback."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from testkit import free_port, wait_for

from fte.commands.sandbox import sandbox_environment
from fte.stack.process import port_open
from fte.kafka import ensure_topics
from fte.settings import Settings

REPO = Path(__file__).resolve().parents[2]
SERVICES = ["sandbox", "ingress", "dispatch", "flow", "metrics-flow"]


def handles_sigterm(pid: int) -> bool:
    status = Path(f"/proc/{pid}/status").read_text()
    caught = int(next(line.split()[1] for line in status.splitlines() if line.startswith("SigCgt:")), 16)
    return bool(caught & (1 << (signal.SIGTERM - 1)))


@pytest.fixture(scope="module")
def service_env(stack, tmp_path_factory):
    prefix = f"t{uuid.uuid4().hex[:10]}."
    ensure_topics(stack.kafka_bootstrap, prefix)
    sandbox_port, ingress_port = free_port(), free_port()
    env = {**os.environ, "TOPIC_PREFIX": prefix, "SANDBOX_PORT": str(sandbox_port),
           "INGRESS_PORT": str(ingress_port), "PUBLIC_BASE_URL": f"http://127.0.0.1:{ingress_port}",
           "RECOVERY_DIR": str(tmp_path_factory.mktemp("recovery")), "LOG_LEVEL": "INFO"}
    for key in ("TWILIO_API_BASE", "GMAIL_DISCOVERY_URL", "GMAIL_PUSH_VERIFICATION_TOKEN"):
        env.pop(key, None)
    env.update(sandbox_environment(Settings(**{k: v for k, v in env.items() if k in Settings.model_fields})))
    return env


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT], ids=["sigterm", "sigint"])
def test_every_service_stops_cleanly(service_env, stop_signal, tmp_path):
    procs = {}
    for name in SERVICES:
        log = (tmp_path / f"{name}.log").open("w")
        procs[name] = subprocess.Popen([sys.executable, "-m", "fte.cli", name], cwd=REPO, env=service_env,
                                       stdout=log, stderr=subprocess.STDOUT)
    try:
        # Past start-up (on a busy machine imports alone can take a while): each process has
        # its SIGTERM handler in place, then a few seconds into its work.
        wait_for(lambda: all(handles_sigterm(p.pid) or p.poll() is not None for p in procs.values()),
                 240, "every service to start")
        for port in (service_env["SANDBOX_PORT"], service_env["INGRESS_PORT"]):  # serving
            wait_for(lambda: port_open("127.0.0.1", int(port)), 240, f"port {port}")
        time.sleep(5)
        running = {n: p.poll() for n, p in procs.items()}
        assert all(code is None for code in running.values()), running
        for proc in procs.values():
            proc.send_signal(stop_signal)
        codes = {n: p.wait(60) for n, p in procs.items()}
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
    logs = {n: (tmp_path / f"{n}.log").read_text(errors="replace") for n in SERVICES}
    assert all(code == 0 for code in codes.values()), codes
    tracebacks = {n: text[-1500:] for n, text in logs.items() if "Traceback" in text}
    assert not tracebacks, tracebacks
