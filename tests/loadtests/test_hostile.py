"""The hostile-input suite's cases against the real services: the ingress as a uvicorn
server, the support flow and the reply dispatcher as `fte` child processes, the local
Gmail/Twilio API server, real Kafka and Postgres. Each case is one test."""

from __future__ import annotations

import os
import time
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from pydantic import SecretStr
from testkit import ServerThread

from fte.kafka import ensure_topics
from ingress.operator_auth import hash_key
from loadtests import hostile

REPO = Path(__file__).resolve().parents[2]
OPERATOR_KEY = "fte_op_hostile-suite-admin"
PUSH_TOKEN = "hostile-suite-push-token"
TWILIO_TOKEN = "hostile-suite-twilio-token"
# Generated requests in the fuzzing case (the command's default is 5,000).
FUZZ_REQUESTS = int(os.environ.get("FTE_HOSTILE_REQUESTS", "400"))


def _child(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "fte.cli", *argv], env={**os.environ, **env},
                            cwd=REPO, stdout=open(log, "ab"), stderr=subprocess.STDOUT,  # noqa: SIM115
                            start_new_session=True)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


@pytest.fixture(scope="module")
def target(stack, tmp_path_factory):
    from ingress.app import create_app
    from sandbox.app import create_app as create_sandbox

    mailbox = f"support-{uuid.uuid4().hex[:8]}@example.com"
    prefix = f"t{uuid.uuid4().hex[:10]}."
    ensure_topics(stack.kafka_bootstrap, prefix)
    logs = tmp_path_factory.mktemp("hostile")
    sandbox_settings = stack.model_copy(update={"GMAIL_MAILBOX": mailbox,
                                                "TWILIO_AUTH_TOKEN": SecretStr(TWILIO_TOKEN)})
    with ServerThread(create_sandbox(sandbox_settings), lifespan="off") as sandbox:
        env = {
            "DATABASE_URL": stack.database_url, "KAFKA_BOOTSTRAP_SERVERS": stack.kafka_bootstrap,
            "TOPIC_PREFIX": prefix, "ENVIRONMENT": "test", "GMAIL_MAILBOX": mailbox,
            "GMAIL_DISCOVERY_URL": f"{sandbox}/discovery/gmail/v1/rest", "TWILIO_API_BASE": sandbox,
            "TWILIO_AUTH_TOKEN": TWILIO_TOKEN, "RECOVERY_DIR": str(logs / "recovery"),
            "RECOVERY_SNAPSHOT_S": "1", "FLOW_WORKERS": "1", "LOG_LEVEL": "WARNING",
            "OPENAI_API_KEY": "", "DISPATCH_RETRY_BASE_S": "0.2", "DISPATCH_RETRY_MAX_S": "1",
        }
        flow = _child(["flow"], env, logs / "flow.log")
        dispatch = _child(["dispatch"], env, logs / "dispatch.log")
        settings = stack.model_copy(update={
            "TOPIC_PREFIX": prefix, "GMAIL_MAILBOX": mailbox, "PUBLIC_BASE_URL": "https://support.example.test",
            "GMAIL_DISCOVERY_URL": f"{sandbox}/discovery/gmail/v1/rest",
            "TWILIO_AUTH_TOKEN": SecretStr(TWILIO_TOKEN),
            "GMAIL_PUSH_VERIFICATION_TOKEN": SecretStr(PUSH_TOKEN),
            "OPERATOR_API_KEYS": SecretStr(f"hostile:admin:{hash_key(OPERATOR_KEY)}"),
            "RATE_LIMIT_PER_IP": "1000000/minute", "RATE_LIMIT_PER_IDENTITY": "100000/minute",
        })
        try:
            with ServerThread(create_app(settings)) as ingress:
                yield hostile.Target(
                    base_url=ingress, public_base_url="https://support.example.test",
                    sandbox_url=sandbox, database_url=stack.database_url,
                    operator_key=OPERATOR_KEY, twilio_token=TWILIO_TOKEN, push_token=PUSH_TOKEN,
                    mailbox=mailbox, answer_timeout=150.0, requests=FUZZ_REQUESTS, seed=1)
        finally:
            _stop(flow)
            _stop(dispatch)


@pytest.mark.parametrize("case", list(hostile.CASES))
def test_hostile_case(target, case):
    outcome = hostile.run_case(case, target)
    print(f"{case}: {outcome.detail}")
    assert not outcome.skipped, outcome.detail
    assert outcome.server_errors == 0, outcome.detail
    assert outcome.passed, outcome.detail


def test_command_prints_one_line_per_case_and_a_json_summary(target, capsys, monkeypatch):
    monkeypatch.setattr(hostile, "target_from_settings", lambda args: target)
    code = hostile.main(["--base-url", target.base_url, "--only", "anonymous_operator_calls",
                         "--only", "oversized_bodies"])
    out = capsys.readouterr().out.strip().splitlines()  # (the ingress thread logs here too)
    lines = [line for line in out if line.split()[0] in ("PASS", "FAIL", "SKIP")] + out[-1:]
    assert [line.split()[0] for line in lines[:-1]] == ["PASS", "PASS"]
    assert __import__("json").loads(lines[-1]) == {"cases": 2, "passed": 2, "server_errors": 0,
                                                   "skipped": 0}
    assert code == 0


def test_reply_on_the_ticket_page_is_answered_on_the_same_ticket(target):
    """Form, answer, the customer's reply on the page, its answer: one ticket, four messages."""
    import httpx
    import psycopg

    with httpx.Client(base_url=target.base_url, timeout=30) as c:
        ticket_id = c.post("/support/submit", json=hostile.form(
            message="How do I set up a shipping address?")).json()["ticket_id"]
        http = hostile.Http(target.base_url)
        assert hostile.wait_for_answer(http, ticket_id, target.answer_timeout)["messages"]
        reply = c.post(f"/support/ticket/{ticket_id}/reply",
                       json={"message": "And which payment methods do you accept?"})
        assert reply.status_code == 202
        deadline = time.monotonic() + target.answer_timeout
        while time.monotonic() < deadline:
            messages = c.get(f"/support/ticket/{ticket_id}").json()["messages"]
            if [m["direction"] for m in messages].count("outbound") >= 2:
                break
            time.sleep(1)
        http.close()
    assert [m["direction"] for m in messages] == ["inbound", "outbound", "inbound", "outbound"]
    assert messages[2]["body"] == "And which payment methods do you accept?"
    with psycopg.connect(target.database_url) as conn:
        tickets = conn.execute("SELECT count(*) FROM tickets WHERE id = %s", (ticket_id,)).fetchone()[0]
    assert tickets == 1
