"""`fte up`'s supervisor: back-off, the crash-loop alert (alerts table + support.alerts), clean stop."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import psycopg
from confluent_kafka import Consumer, TopicPartition
from testkit import wait_for

from fte.kafka import ensure_topics
from fte.supervisor import RestartPolicy, Service, crash_loop_alert
from schema.topics import ALERTS, topic_name

REPO = Path(__file__).resolve().parents[2]


def test_backoff_doubles_up_to_its_cap_and_three_exits_in_the_window_are_a_crash_loop():
    policy = RestartPolicy(base_s=1, max_s=60, window_s=600, crash_loop_restarts=3)
    assert [policy.backoff_s(n) for n in (1, 2, 3, 4, 7, 20)] == [1, 2, 4, 8, 60, 60]
    assert not policy.crash_loop(2) and policy.crash_loop(3)
    service = Service("metrics-flow", ["metrics-flow"])
    service.exits.extend([0.0, 100.0, 650.0])
    assert service.recent_exits(now=700.0, window_s=600) == 2  # the first one left the window


def test_crash_loop_alert_names_the_service_and_the_rebuild_command():
    from datetime import UTC, datetime

    service = Service("metrics-flow", ["metrics-flow"], last_code=4)
    alert = crash_loop_alert(service, 3, RestartPolicy(), datetime(2026, 1, 1, 12, 0, 30, tzinfo=UTC))
    assert alert.kind == "crash_loop" and alert.value == 3 and alert.threshold == 3
    assert alert.detail["subject"] == "metrics-flow" and alert.detail["exit_code"] == 4
    assert "fte recovery reset metrics" in alert.detail["hint"]
    assert alert.detail["bucket"] == "2026-01-01T12:00:00+00:00"


SUPERVISOR = textwrap.dedent("""
    from fte.settings import get_settings
    from fte.supervisor import RestartPolicy, supervise
    # `fte recovery` with a bad argument exits 2 at once: a service that keeps crashing
    supervise([(NAME, ["recovery", "no-such-command"])], get_settings(),
              policy=RestartPolicy(base_s=0.2, max_s=1.0, window_s=600, crash_loop_restarts=3))
""")


def test_a_crash_looping_service_raises_an_alert_and_the_supervisor_stops_cleanly(stack, tmp_path):
    prefix = f"t{uuid.uuid4().hex[:10]}."
    name = f"broken-{prefix[1:9]}"  # this run's service
    ensure_topics(stack.kafka_bootstrap, prefix, [ALERTS])
    env = {**os.environ, "TOPIC_PREFIX": prefix, "LOG_LEVEL": "WARNING"}
    log = tmp_path / "supervisor.log"
    with log.open("w") as sink:
        proc = subprocess.Popen([sys.executable, "-c", SUPERVISOR.replace("NAME", repr(name))], cwd=REPO, env=env,
                                stdout=subprocess.PIPE, stderr=sink, text=True)
    try:
        def alert_row():
            with psycopg.connect(stack.database_url, autocommit=True) as conn:
                return conn.execute("SELECT value, detail FROM alerts WHERE kind = 'crash_loop' "
                                    "AND detail->'subjects' ? %s ORDER BY id DESC LIMIT 1", (name,)).fetchone()
        value, detail = wait_for(alert_row, 180, f"the crash-loop alert row (log: {log})")
        assert value >= 3 and detail["subjects"][name]["exit_code"] == 2
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0 and "Traceback" not in log.read_text()
    assert out.count(f"started {name}") >= 3  # restarted after each exit
    text = re.sub(r"\x1b\[[0-9;]*m", "", out + log.read_text())  # without colours
    backoffs = [float(v) for v in re.findall(r"restart_in_s=([\d.]+)", text)]
    assert backoffs[:3] == [0.2, 0.4, 0.8]  # doubling

    consumer = Consumer({"bootstrap.servers": stack.kafka_bootstrap, "group.id": "t", "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic_name(ALERTS, prefix), 0, 0)])
    try:
        def crash_loop_message():
            for msg in consumer.consume(10, 1.0):
                if msg.error() is None and msg.key() == b"crash_loop" \
                        and json.loads(msg.value())["detail"]["subject"] == name:
                    return json.loads(msg.value())
            return None
        message = wait_for(crash_loop_message, 60, "the alert on support.alerts")
    finally:
        consumer.close()
    assert message["detail"]["exit_code"] == 2 and message["value"] >= 3
