"""The locust load test: its guards, and a short headless run against the real ingress.

The headless run starts the ingress app (ingress/app.py) under uvicorn on the test stack,
runs locust for a few seconds, and checks every request succeeded and that what locust
reports as accepted is in Postgres (tickets) and on Kafka (inbound topics).
"""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psycopg
import pytest
from confluent_kafka import Consumer, TopicPartition
from testkit import free_port
from twilio.request_validator import RequestValidator

from fte.kafka import ensure_topics
from loadtests.payloads import IngressNotReady, wait_until_healthy
from schema.topics import WEB_INBOUND, WHATSAPP_INBOUND, topic_name

REPO = Path(__file__).resolve().parents[2]
LOCUSTFILE = REPO / "loadtests" / "locustfile.py"
INGRESS_APP = REPO / "ingress" / "app.py"
LOCUST = Path(sys.executable).with_name("locust")


def _ingress_factory() -> str | None:
    """`ingress.app:create_app` / `ingress.app:app` when the ingress module provides one."""
    if not INGRESS_APP.is_file():
        return None
    names = set()
    for node in ast.parse(INGRESS_APP.read_text()).body:
        if isinstance(node, ast.FunctionDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names |= {t.id for t in node.targets if isinstance(t, ast.Name)}
    if "create_app" in names:
        return "create_app"
    if "app" in names:
        return "app"
    return None


_INSPECT = """
import importlib.util, json, sys
from locust import HttpUser
spec = importlib.util.spec_from_file_location("fte_locustfile", sys.argv[1])
m = importlib.util.module_from_spec(spec)
spec.loader.exec_module(m)
users = {n: sorted({t.__name__ for t in c.tasks}) for n, c in vars(m).items()
         if isinstance(c, type) and issubclass(c, HttpUser) and c is not HttpUser}
print(json.dumps({"users": users, "max_users": m.MAX_USERS, "max_run_time": m.MAX_RUN_TIME_S,
                  "host": m.DEFAULT_HOST}))
"""


def test_locustfile_imports_with_bounded_users_for_the_three_contracts():
    # In a child process: importing locust monkey-patches gevent into the interpreter.
    out = subprocess.run([sys.executable, "-c", _INSPECT, str(LOCUSTFILE)], check=True,
                         capture_output=True, text=True, timeout=60, cwd=REPO).stdout
    facts = json.loads(out.strip().splitlines()[-1])
    assert facts["users"] == {"WebCustomer": ["read_ticket", "submit_form"],
                              "WhatsAppSender": ["inbound_message"]}
    assert facts["max_users"] <= 200 and facts["max_run_time"] <= 600
    assert facts["host"].startswith("http://127.0.0.1:")


def test_whatsapp_payload_carries_a_signature_twilio_would_send():
    import random

    from loadtests.payloads import load_questions, twilio_signature, webhook_url, whatsapp_form

    form = whatsapp_form(random.Random(1), load_questions(), account_sid="AC" + "1" * 32,
                         to="whatsapp:+14155238886")
    url = webhook_url("https://support.example.com/")
    signature = twilio_signature("secret-token", url, form)
    assert url == "https://support.example.com/webhooks/whatsapp"
    assert RequestValidator("secret-token").validate(url, form, signature)
    assert not RequestValidator("other-token").validate(url, form, signature)
    assert re.fullmatch(r"whatsapp:\+1555\d{7}", form["From"]) and form["MessageSid"].startswith("SM")


def test_locust_refuses_a_host_other_than_loopback():
    result = subprocess.run(
        [str(LOCUST), "-f", str(LOCUSTFILE), "--headless", "-u", "1", "-r", "1", "-t", "2s",
         "--host", "http://example.com"],
        capture_output=True, text=True, timeout=60, cwd=REPO, check=False)
    assert result.returncode != 0
    assert "only 127.0.0.1 is allowed" in result.stdout + result.stderr


def test_locust_refuses_the_unbounded_web_ui():
    result = subprocess.run(
        [str(LOCUST), "-f", str(LOCUSTFILE), "--web-host", "127.0.0.1", "--web-port", str(free_port()), "--host",
         "http://127.0.0.1:9"], capture_output=True, text=True, timeout=60, cwd=REPO, check=False)
    assert result.returncode != 0
    assert "--headless" in result.stdout + result.stderr




def _count_messages(bootstrap: str, topic: str) -> int:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"count-{uuid.uuid4().hex}",
                         "enable.auto.commit": False})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        total = 0
        for p in partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            total += high - low
        return total
    finally:
        consumer.close()


@pytest.mark.skipif(_ingress_factory() is None,
                    reason="ingress/app.py with `app` or `create_app` does not exist yet")
def test_headless_locust_run_against_the_ingress(stack, kafka_bootstrap, database_url, topic_prefix):
    ensure_topics(kafka_bootstrap, topic_prefix)
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "TOPIC_PREFIX": topic_prefix,
        "INGRESS_HOST": "127.0.0.1",
        "INGRESS_PORT": str(port),
        "PUBLIC_BASE_URL": base_url,
        "RATE_LIMIT_PER_IP": "1000000/minute",
        "RATE_LIMIT_PER_IDENTITY": "1000/minute",
        "TWILIO_AUTH_TOKEN": "load-test-twilio-token",
    }
    factory = _ingress_factory()
    uvicorn = [sys.executable, "-m", "uvicorn", f"ingress.app:{factory}", "--host", "127.0.0.1",
               "--port", str(port), "--log-level", "warning"]
    if factory == "create_app":
        uvicorn.append("--factory")
    server = subprocess.Popen(uvicorn, env=env, cwd=REPO, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    started_at = time.time()
    try:
        try:
            wait_until_healthy(base_url, alive=lambda: server.poll() is None)
        except IngressNotReady as exc:
            output = server.stdout.read()[-3000:] if server.poll() is not None else ""
            raise AssertionError(f"{exc}\n{output}") from exc
        result = subprocess.run(
            [str(LOCUST), "-f", str(LOCUSTFILE), "--headless", "-u", "6", "-r", "6", "-t", "6s",
             "--host", base_url, "--json", "--only-summary", "--stop-timeout", "5"],
            env=env, capture_output=True, text=True, timeout=120, cwd=REPO, check=False)
    finally:
        server.terminate()
        server_log, _ = server.communicate(timeout=30)
    stats = {s["name"]: s for s in json.loads(result.stdout[result.stdout.index("["):
                                                         result.stdout.rindex("]") + 1])}
    assert result.returncode == 0, result.stderr[-3000:] + server_log[-3000:]
    for name in ("/support/submit", "/webhooks/whatsapp", "/support/ticket/[id]"):
        assert stats[name]["num_requests"] > 0, (name, stats.keys())
        assert stats[name]["num_failures"] == 0, (name, result.stderr[-3000:])

    # What locust counted as accepted is really there: ticket rows and inbound events.
    submits = stats["/support/submit"]["num_requests"]
    with psycopg.connect(database_url) as conn:
        tickets = conn.execute(
            "SELECT count(*) FROM tickets WHERE contact_email LIKE 'load+%%@example.com'"
            " AND created_at >= to_timestamp(%s)", (started_at - 1,)).fetchone()[0]
    assert tickets == submits
    assert _count_messages(kafka_bootstrap, topic_name(WEB_INBOUND, topic_prefix)) == submits
    assert (_count_messages(kafka_bootstrap, topic_name(WHATSAPP_INBOUND, topic_prefix))
            == stats["/webhooks/whatsapp"]["num_requests"])
