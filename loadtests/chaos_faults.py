"""The chaos run's fault injectors: each one injects a fault and undoes it, and says if it did.

Every injector takes the run (`Rig`) and returns a short record; `injected` is False only
when there was nothing to inject into (e.g. the victim was not running), so a verdict never
counts a fault that did not happen.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from fte.dataflow_runner import EXIT_STORE_IN_USE
from fte.supervisor import Service, Supervisor
from loadtests.chaos_proxy import ProxyState
from loadtests.chaos_traffic import Traffic


def kill9(service: Service) -> bool:
    if not service.alive():
        return False
    os.kill(service.proc.pid, signal.SIGKILL)
    service.proc.wait()
    return True


@dataclass
class Rig:
    services: dict[str, Service]
    supervisor: Supervisor  # restarts what exits on its own, as `fte up` does
    proxy: ProxyState
    traffic: Traffic
    kafka: object | None  # EmbeddedKafka when the stack is embedded
    postgres: object | None  # EmbeddedPostgres when the stack is embedded
    down_s: float = 3.0
    storm_s: float = 60.0
    notes: list[str] = field(default_factory=list)


def _kill(name: str) -> Callable[[Rig], dict]:
    def inject(rig: Rig) -> dict:
        with rig.supervisor.held(name) as service:  # restarted by us after down_s, not by it
            injected = kill9(service)
            time.sleep(rig.down_s)
        return {"injected": injected}
    return inject


def kafka_restart(rig: Rig) -> dict:
    if rig.kafka is None or rig.kafka.pid() is None:
        return {"injected": False}
    rig.kafka.stop()
    time.sleep(rig.down_s)
    _start_until_up(rig.kafka)
    return {"injected": True}


def postgres_restart(rig: Rig) -> dict:
    if rig.postgres is None or rig.postgres.pid() is None:
        return {"injected": False}
    rig.postgres.stop()
    time.sleep(rig.down_s)
    _start_until_up(rig.postgres)
    return {"injected": True}


def _start_until_up(server, attempts: int = 3) -> None:
    """A restart on a busy machine can outlast one start timeout: try again before giving up."""
    for attempt in range(1, attempts + 1):
        try:
            server.start()
            return
        except (RuntimeError, TimeoutError):
            if attempt == attempts:
                raise


def second_instance(rig: Rig) -> dict:
    """Start a second support flow and metrics flow on the same stores, as an operator might."""
    outcomes = {}
    for name in ("flow", "metrics-flow"):
        original = rig.services[name]
        stray = subprocess.run([sys.executable, "-m", "fte.cli", *original.argv], env=original.env,
                               capture_output=True, text=True, timeout=180, check=False)
        refused = stray.returncode == EXIT_STORE_IN_USE and "in use by another process" in stray.stderr
        outcomes[name] = "refused" if refused else f"exit {stray.returncode}"
        if not refused:
            rig.notes.append(f"second {name} was not refused: {stray.stderr[-300:]}")
    return {"injected": True, "outcomes": outcomes,
            "refused": all(v == "refused" for v in outcomes.values())}


def _api_fault(api: str, **fault) -> Callable[[Rig], dict]:
    def inject(rig: Rig) -> dict:
        rig.proxy.set(api, rig.storm_s, **fault)
        time.sleep(rig.storm_s)
        return {"injected": True, "requests_affected": rig.proxy.injected.get(api, 0)}
    return inject


def pubsub_silent(rig: Rig) -> dict:
    rig.traffic.pubsub_silent_until = time.monotonic() + rig.storm_s
    time.sleep(rig.storm_s)
    return {"injected": True}


def slow_api(rig: Rig) -> dict:
    for api in ("twilio", "gmail"):
        rig.proxy.set(api, rig.storm_s, delay_s=30.0)
    time.sleep(rig.storm_s)
    return {"injected": True, "requests_affected": sum(rig.proxy.injected.values())}


INJECTORS: dict[str, Callable[[Rig], dict]] = {
    "flow-kill": _kill("flow"),
    "dispatcher-kill": _kill("dispatch"),
    "metrics-kill": _kill("metrics-flow"),
    "ingress-kill": _kill("ingress"),
    "kafka-restart": kafka_restart,
    "postgres-restart": postgres_restart,
    "second-instance": second_instance,
    "twilio-503": _api_fault("twilio", status=503),
    "gmail-5xx": _api_fault("gmail", status=500),
    "pubsub-silent": pubsub_silent,
    "slow-api": slow_api,
}

# `--scenario all`: every fault, the support flow killed three times.
ALL = ["flow-kill", "dispatcher-kill", "flow-kill", "metrics-kill", "ingress-kill", "kafka-restart",
       "second-instance", "flow-kill", "postgres-restart", "twilio-503", "gmail-5xx", "pubsub-silent",
       "slow-api"]
