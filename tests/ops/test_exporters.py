"""Each long-running service exports its own metrics on a port of its own, scraped while it
works, and its liveness follows its work loop (a hung loop fails /livez)."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import psycopg
import pytest
from testkit import free_port, wait_for

from fte import observability
from fte.kafka import ensure_topics
from tests.flows.support_harness import inbound, publish

HERE = Path(__file__).parent


@pytest.fixture
def flow_env(migrated_db, kafka_bootstrap, channel_api_server, tmp_path):
    prefix = f"t{uuid.uuid4().hex[:10]}."
    ensure_topics(kafka_bootstrap, prefix)
    return {"DATABASE_URL": migrated_db, "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
            "TOPIC_PREFIX": prefix, "RECOVERY_DIR": str(tmp_path / "recovery"),
            "RECOVERY_SNAPSHOT_S": "1", "FLOW_WORKERS": "2", "LOG_LEVEL": "WARNING",
            "GMAIL_DISCOVERY_URL": f"{channel_api_server}/discovery/gmail/v1/rest",
            "TWILIO_API_BASE": channel_api_server}


def test_flows_and_dispatcher_export_while_they_work(flow_env, services, migrated_db):
    support = services(["flow"], flow_env)
    metrics = services(["metrics-flow"], flow_env)
    dispatch = services(["dispatch"], flow_env)
    relay = services(["relay"], flow_env)
    for service in (support, metrics, dispatch, relay):
        service.wait_ready()
        assert service.get("/livez").status_code == 200
    assert len({support.port, metrics.port, dispatch.port, relay.port}) == 4

    messages = [inbound("web", f"How do I reset my password? ({i})", email=f"web{i}@example.com",
                        name="Ann") for i in range(3)]
    messages += [inbound("whatsapp", f"hello, where is my order {i}", phone=f"+4477009000{i:02d}")
                 for i in range(2)]
    publish(flow_env, messages)

    wait_for(lambda: support.metric("fte_messages_in_total", channel="web") == 3
             and support.metric("fte_messages_in_total", channel="whatsapp") == 2, 120,
             "support flow counted the messages in")
    for stage in ("load_context", "decide", "persist"):
        assert support.metric("fte_stage_seconds_count", stage=stage) >= 1
    assert support.metric("fte_batch_size_count", stage="load_context") >= 1
    assert support.metric("fte_batch_size_sum", stage="load_context") == 5
    # One reply planned per message (an answer, a question or an escalation acknowledgement).
    assert support.metric("fte_messages_out_total") == 5
    assert support.metric("fte_agent_seconds_count") >= 1
    wait_for(lambda: support.metric("fte_recovery_partitions_held") >= 1, 30, "recovery partitions")
    # Bytewax's Kafka source reports its lag per partition through the same registry.
    wait_for(lambda: "bytewax_kafka_consumer_lag" in support.get("/metrics").text, 60, "consumer lag")

    # The dispatcher sends the replies and reports outbox depth and breaker state.
    wait_for(lambda: dispatch.metric("fte_sends_total", outcome="sent") >= 1, 120, "sends counted")
    text = dispatch.get("/metrics").text
    assert "fte_outbox_depth" in text or dispatch.metric("fte_sends_total", outcome="sent") >= 5
    assert 'fte_breaker_open{channel="web"} 0.0' in text
    assert dispatch.metric("fte_heartbeat_age_seconds") < 60

    # The relay publishes the batches' events (received, replied, ...) and counts them.
    wait_for(lambda: relay.metric("fte_relayed_events_total", topic="support.events") >= 10, 60,
             "relay counted the events it published")
    assert relay.metric("fte_heartbeat_age_seconds") < 60

    # The metrics flow counts the relayed events in per channel; it beats and snapshots; every
    # service recorded its minute of uptime.
    wait_for(lambda: metrics.metric("fte_messages_in_total", channel="web") >= 3
             and metrics.metric("fte_messages_in_total", channel="whatsapp") >= 2, 60,
             "metrics flow counted the events in")
    assert metrics.get("/readyz").status_code == 200
    wait_for(lambda: metrics.metric("fte_recovery_partitions_held") >= 1, 30, "metrics flow recovery")
    def recorded() -> set[str]:
        with psycopg.connect(migrated_db) as conn:
            return {r[0] for r in conn.execute("SELECT DISTINCT service FROM service_uptime").fetchall()}
    wait_for(lambda: {"support-flow", "metrics-flow", "dispatcher", "relay"} <= recorded(), 30,
             "uptime recorded")


def test_liveness_fails_while_the_work_loop_hangs_and_recovers(tmp_path, settings):
    port = free_port()
    hang = tmp_path / "hang"
    env = {**os.environ, "METRICS_PORT": str(port), "HEARTBEAT_MAX_AGE_S": "2", "HANG_FILE": str(hang),
           "DATABASE_URL": settings.database_url}
    proc = subprocess.Popen([sys.executable, str(HERE / "hang_flow.py")], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    def status(path: str) -> int | None:
        assert proc.poll() is None, proc.stderr.read()[-2000:]
        try:
            return httpx.get(f"http://127.0.0.1:{port}{path}", timeout=5).status_code
        except httpx.HTTPError:
            return None

    try:
        wait_for(lambda: status("/readyz") == 200, 60, "ready")
        assert status("/livez") == 200
        hang.touch()  # the next tick's step blocks the worker
        wait_for(lambda: status("/livez") == 503, 60, "liveness failing while hung")
        assert status("/readyz") == 503
        # /metrics still answers (the exporter is its own thread) and shows the stale beat.
        assert "fte_heartbeat_age_seconds" in httpx.get(f"http://127.0.0.1:{port}/metrics").text
        hang.unlink()
        wait_for(lambda: status("/livez") == 200, 60, "liveness back once the loop turns")
    finally:
        proc.terminate()
        proc.wait(20)


def test_console_exports_from_start(services, migrated_db, tmp_path):
    console = services(["console"], {"DATABASE_URL": migrated_db, "CONSOLE_PORT": str(free_port()),
                                     "FTE_DATA_DIR": str(tmp_path)})
    console.wait_ready()
    assert console.metric("fte_process_start_time_seconds", service="console") > 0
    with psycopg.connect(migrated_db) as conn:
        wait_for(lambda: conn.execute("SELECT 1 FROM service_uptime WHERE service = 'console'").fetchone(),
                 30, "console uptime recorded")


def test_health_is_the_stalest_loop():
    now = [100.0]
    health = observability.Health("dispatcher", max_age_s=10, clock=lambda: now[0])
    assert health.live() and not health.ready()  # nothing yet: live (starting), not ready
    health.set_ready(loop="outbox-email")
    health.beat("outbox-web")
    now[0] = 105.0
    health.beat("outbox-email")
    assert health.live() and health.ready()
    now[0] = 111.0  # outbox-web last beat 11 s ago, outbox-email 6 s ago
    assert not health.live() and not health.ready()
    health.beat("outbox-web")
    assert health.live()


def test_k8s_launcher_runs_a_flow_with_its_probes(kafka_bootstrap, migrated_db, tmp_path):
    """k8s/flow_entry.py as the metrics-flow pod runs it: init container, launcher, probes."""
    prefix = f"t{uuid.uuid4().hex[:10]}."
    ensure_topics(kafka_bootstrap, prefix)
    recovery = tmp_path / "recovery"
    k8s = HERE.parents[1] / "k8s"
    subprocess.run([sys.executable, str(k8s / "flow-recovery-init.py"), str(recovery), "--partitions", "4",
                    "--replicas", "1", "--pod-name", "metrics-flow-0"], check=True, capture_output=True)
    port = free_port()
    env = {**os.environ, "DATABASE_URL": migrated_db, "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
           "TOPIC_PREFIX": prefix, "RECOVERY_DIR": str(recovery), "METRICS_PORT": str(port),
           "POD_NAME": "metrics-flow-0"}
    proc = subprocess.Popen([sys.executable, str(k8s / "flow_entry.py"), "metrics", "--processes", "1"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    def get(path: str):
        assert proc.poll() is None, proc.stderr.read()[-3000:]
        try:
            return httpx.get(f"http://127.0.0.1:{port}{path}", timeout=5)
        except httpx.HTTPError:
            return None

    try:
        wait_for(lambda: (r := get("/readyz")) is not None and r.status_code == 200, 120, "launcher ready")
        assert get("/livez").status_code == 200
        wait_for(lambda: 'fte_recovery_partitions_held{service="metrics-flow"} 4.0' in get("/metrics").text,
                 30, "the pod's four recovery partitions")
    finally:
        proc.terminate()
        proc.wait(30)
