"""Chaos run: kill the flow or restart Kafka under traffic, then check exactly-once replies.

Traffic goes through the real ingress while the faults happen; afterwards Postgres must show
every accepted message answered exactly once.

    .venv/bin/python -m loadtests.chaos --scenario flow-kill --messages 300 --rate 20
    .venv/bin/python -m loadtests.chaos --scenario kafka-restart

It runs its own `fte sandbox` (local Gmail/Twilio APIs), `fte ingress`, `fte flow` and
`fte dispatch` on a fresh topic prefix and recovery directory, against the stack of the
current settings (set up first with `fte up --no-services`).
Run it on a stack of its own so nobody else's Kafka is stopped, e.g.
`FTE_DATA_DIR=.fte/chaos FTE_KAFKA_PORT=39092 FTE_KAFKA_CONTROLLER_PORT=39093 FTE_PG_PORT=39432`.

Faults: `flow-kill` sends SIGKILL to the flow process --kills times, restarting it after
--down seconds; `kafka-restart` stops and restarts the embedded Kafka broker. Clients behave
like the real ones: the web form and Twilio retry a refused (503) or unanswered request.

Verdict, per accepted message, from Postgres: one inbound `messages` row, one `reply_outbox`
row that reached status 'sent', and no second outbound `messages` row answering it; for
WhatsApp, when the sandbox lists what it received, no more Twilio API calls than reply parts.
The last line printed is a JSON summary; exit code 0 only when every message passed.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psycopg

from fte.commands.sandbox import sandbox_environment
from fte.settings import Settings
from fte.stack.kafka import EmbeddedKafka
from loadtests.payloads import (
    SUBMIT_PATH,
    WHATSAPP_PATH,
    load_questions,
    twilio_signature,
    wait_until_healthy,
    web_submission,
    webhook_url,
    whatsapp_form,
)

SCENARIOS = ("flow-kill", "kafka-restart")
RETRYABLE = {429, 500, 502, 503, 504}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- processes ---------------------------------------------------------------------------


@dataclass
class Service:
    """One `fte <subcommand>` child process, restartable, logging to its own file."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log_dir: Path
    proc: subprocess.Popen | None = None
    starts: int = 0

    def start(self) -> None:
        self.starts += 1
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "fte.cli", *self.argv], env=self.env,
                                     stdout=log, stderr=subprocess.STDOUT)
        print(f"  started {self.name} (pid {self.proc.pid}): fte {' '.join(self.argv)}", flush=True)

    def kill9(self) -> bool:
        """SIGKILL the process; False when it was not running (no fault was injected)."""
        if not self.alive():
            print(f"  {self.name} was not running: nothing to kill (see {self.log_path})", flush=True)
            return False
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        print(f"  killed -9 {self.name} (pid {self.proc.pid})", flush=True)
        return True

    @property
    def log_path(self) -> Path:
        return self.log_dir / f"{self.name}.log"

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


def available_subcommands() -> set[str]:
    from fte.cli import build_parser

    return set(build_parser()._subparsers._group_actions[0].choices)


# --- traffic -----------------------------------------------------------------------------


@dataclass
class Traffic:
    """Sends messages at a steady rate; records each one the ingress accepted by inbound key."""

    base_url: str
    settings: Settings
    channels: list[str]
    total: int
    rate: float
    accepted: list[str] = field(default_factory=list)
    refusals: Counter = field(default_factory=Counter)
    sent: int = 0  # messages handed to the client so far (accepted or still retrying)
    gave_up: int = 0
    finished: bool = False

    def run(self, retry_for_s: float = 120.0) -> None:
        try:
            self._send_all(retry_for_s)
        finally:
            self.finished = True

    def _send_all(self, retry_for_s: float) -> None:
        rng = random.Random(7)
        questions = load_questions()
        token = self.settings.TWILIO_AUTH_TOKEN.get_secret_value()
        signed_url = webhook_url(self.settings.PUBLIC_BASE_URL)
        with httpx.Client(base_url=self.base_url, timeout=15.0) as client:
            for i in range(self.total):
                started = time.monotonic()
                channel = self.channels[i % len(self.channels)]
                self.sent += 1
                if channel == "web":
                    request = client.build_request("POST", SUBMIT_PATH,
                                                   json=web_submission(rng, questions))
                    key = self._deliver(client, request, 202, retry_for_s)
                    key = key and f"web:{key.json()['ticket_id']}"
                else:
                    form = whatsapp_form(rng, questions,
                                         account_sid=self.settings.TWILIO_ACCOUNT_SID,
                                         to=self.settings.TWILIO_WHATSAPP_FROM)
                    signature = twilio_signature(token, signed_url, form)
                    request = client.build_request("POST", WHATSAPP_PATH, data=form,
                                                   headers={"X-Twilio-Signature": signature})
                    key = self._deliver(client, request, 200, retry_for_s)
                    key = key and f"whatsapp:{form['MessageSid']}"
                if key is None:
                    self.gave_up += 1
                else:
                    self.accepted.append(key)
                time.sleep(max(0.0, 1.0 / self.rate - (time.monotonic() - started)))

    def _deliver(self, client: httpx.Client, request: httpx.Request, ok_status: int,
                 retry_for_s: float) -> httpx.Response | None:
        """Retry like Twilio and a browser do, until accepted or the retry window closes."""
        deadline = time.monotonic() + retry_for_s
        while time.monotonic() < deadline:
            try:
                response = client.send(request)
            except httpx.HTTPError as exc:
                self.refusals[type(exc).__name__] += 1
                time.sleep(1.0)
                continue
            if response.status_code == ok_status:
                return response
            self.refusals[str(response.status_code)] += 1
            if response.status_code not in RETRYABLE:
                print(f"  not retryable: {response.status_code} {response.text[:200]}", flush=True)
                return None
            time.sleep(min(5.0, float(response.headers.get("Retry-After", 1))))
        return None


# --- verdict -----------------------------------------------------------------------------

_PER_MESSAGE = """
SELECT k.channel || ':' || k.id AS key,
       (SELECT count(*) FROM messages m
         WHERE m.channel = k.channel AND m.channel_message_id = k.id
           AND m.direction = 'inbound') AS inbound,
       (SELECT count(*) FROM reply_outbox o WHERE o.inbound_key = k.channel || ':' || k.id) AS outbox,
       (SELECT count(*) FROM reply_outbox o
         WHERE o.inbound_key = k.channel || ':' || k.id AND o.status = 'sent') AS sent,
       (SELECT coalesce(max(o.parts_sent), 0) FROM reply_outbox o
         WHERE o.inbound_key = k.channel || ':' || k.id) AS parts,
       (SELECT max(o.recipient) FROM reply_outbox o
         WHERE o.inbound_key = k.channel || ':' || k.id) AS recipient,
       (SELECT count(*) FROM messages m
         WHERE m.in_reply_to = k.channel || ':' || k.id AND m.direction = 'outbound') AS outbound
FROM unnest(%s::text[], %s::text[]) AS k(channel, id)
"""


def per_message(database_url: str, keys: list[str]) -> list[dict]:
    channels, ids = zip(*(key.split(":", 1) for key in keys)) if keys else ((), ())
    with psycopg.connect(database_url) as conn:
        cur = conn.execute(_PER_MESSAGE, (list(channels), list(ids)))
        columns = [c.name for c in cur.description]
        return [dict(zip(columns, row)) for row in cur.fetchall()]


def wait_until_settled(database_url: str, keys: list[str], timeout_s: float) -> list[dict]:
    """Poll until every accepted message has a sent reply, or the timeout passes."""
    deadline = time.monotonic() + timeout_s
    while True:
        rows = per_message(database_url, keys)
        pending = sum(1 for r in rows if r["sent"] < 1)
        if pending == 0 or time.monotonic() > deadline:
            return rows
        print(f"  waiting for replies: {pending} of {len(rows)} not sent yet", flush=True)
        time.sleep(3.0)


def twilio_calls_by_recipient(sandbox_url: str | None) -> Counter | None:
    """What the local Twilio server received, by recipient; None when it cannot say."""
    if not sandbox_url:
        return None
    try:
        data = httpx.get(f"{sandbox_url}/_sandbox/twilio/sent", timeout=10).json()
    except (httpx.HTTPError, ValueError):
        return None
    items = data.get("messages", data.get("data", [])) if isinstance(data, dict) else data
    counts: Counter = Counter()
    for item in items if isinstance(items, list) else []:
        to = (item.get("to") or item.get("To")) if isinstance(item, dict) else None
        if to:
            counts[_bare_number(to)] += 1
    return counts


def _bare_number(address: str) -> str:
    return address.removeprefix("whatsapp:")


def verdict(rows: list[dict], api_calls: Counter | None) -> dict:
    outcome = Counter()
    failures = []
    for row in rows:
        problems = []
        if row["inbound"] != 1:
            problems.append(f"inbound rows {row['inbound']}")
        if row["outbox"] != 1:
            problems.append(f"outbox rows {row['outbox']}")
        elif row["sent"] != 1:
            problems.append("reply not sent")
        if row["outbound"] > 1:
            problems.append(f"outbound rows {row['outbound']}")
        if api_calls is not None and row["key"].startswith("whatsapp:") and row["recipient"]:
            calls = api_calls.get(_bare_number(row["recipient"]), 0)
            if calls > max(row["parts"], 1):
                problems.append(f"twilio calls {calls} for {row['parts']} part(s)")
        outcome["exactly_once" if not problems else "failed"] += 1
        if problems:
            failures.append({"key": row["key"], "problems": problems})
    return {"checked": len(rows), **outcome, "failures": failures[:20],
            "channel_api_checked": api_calls is not None}


# --- faults ------------------------------------------------------------------------------


def inject_faults(scenario: str, traffic: Traffic, flow: Service, kafka: EmbeddedKafka | None,
                  kills: int, down_s: float, log: list[dict]) -> None:
    """Spread `kills` faults evenly over the run, each while traffic is flowing."""
    for n in range(1, kills + 1):
        mark = traffic.total * n // (kills + 1)
        while traffic.sent < mark and not traffic.finished:
            time.sleep(0.1)
        at, after = time.time(), traffic.sent
        if scenario == "flow-kill":
            injected = flow.kill9()
            time.sleep(down_s)
            flow.start()
        else:
            print("  stopping kafka", flush=True)
            injected = kafka.pid() is not None
            kafka.stop()
            time.sleep(down_s)
            kafka.start()
            print("  kafka is back", flush=True)
        log.append({"fault": scenario, "injected": injected, "after_messages": after, "at": at,
                    "down_s": round(time.time() - at, 1)})


# --- main --------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", choices=SCENARIOS, default="flow-kill")
    parser.add_argument("--messages", type=int, default=300)
    parser.add_argument("--rate", type=float, default=20.0, help="messages per second")
    parser.add_argument("--kills", type=int, default=2, help="faults injected during the run")
    parser.add_argument("--down", type=float, default=3.0, help="seconds a victim stays down")
    parser.add_argument("--channels", default="web,whatsapp", help="comma list of web,whatsapp")
    parser.add_argument("--settle", type=float, default=180.0,
                        help="seconds to wait for the last replies after traffic ends")
    args = parser.parse_args(argv)
    if not 1 <= args.messages <= 20_000 or not 0 < args.rate <= 500:
        parser.error("--messages must be 1..20000 and --rate 0..500")
    channels = [c.strip() for c in args.channels.split(",") if c.strip()]
    if not set(channels) <= {"web", "whatsapp"}:
        parser.error("--channels takes web and/or whatsapp")

    base = Settings()
    if args.scenario == "kafka-restart" and not base.embedded_kafka:
        parser.error("kafka-restart stops the embedded broker; KAFKA_BOOTSTRAP_SERVERS is set")
    needed = {"ingress", "flow", "dispatch", "sandbox"}
    missing = needed - available_subcommands()
    if missing:
        print(f"cannot run: `fte` has no {', '.join(sorted(missing))} subcommand(s) yet")
        return 2

    run_id = uuid.uuid4().hex[:8]
    run_dir = base.FTE_DATA_DIR / "chaos" / run_id
    run_dir.mkdir(parents=True)
    ingress_port = free_port()
    env = {
        **os.environ,
        "TOPIC_PREFIX": f"chaos{run_id}.",
        "RECOVERY_DIR": str(run_dir / "recovery"),
        "INGRESS_HOST": "127.0.0.1",
        "INGRESS_PORT": str(ingress_port),
        "PUBLIC_BASE_URL": f"http://127.0.0.1:{ingress_port}",
        # One client address sends everything: the per-IP limit would refuse the test itself.
        "RATE_LIMIT_PER_IP": "1000000/minute",
        "RATE_LIMIT_PER_IDENTITY": "1000/minute",
    }
    # The local Gmail/Twilio servers stand in for the channel APIs the dispatcher calls.
    sandbox_port = free_port()
    sandbox_url = f"http://127.0.0.1:{sandbox_port}"
    env["SANDBOX_PORT"] = str(sandbox_port)
    for key in ("TWILIO_API_BASE", "GMAIL_DISCOVERY_URL", "GMAIL_PUSH_VERIFICATION_TOKEN"):
        env.pop(key, None)
    settings = Settings(**{k: v for k, v in env.items() if k in Settings.model_fields})
    env.update(sandbox_environment(settings))
    settings = Settings(**{k: v for k, v in env.items() if k in Settings.model_fields})

    print(f"chaos run {run_id}: {args.scenario} x{args.kills}, {args.messages} messages at "
          f"{args.rate}/s on {', '.join(channels)}; logs in {run_dir}", flush=True)
    subprocess.run([sys.executable, "-m", "fte.cli", "up", "--no-services"], env=env, check=True,
                   stdout=subprocess.DEVNULL)
    services = {name: Service(name, [name], env, run_dir)
                for name in ("sandbox", "ingress", "flow", "dispatch")}
    kafka = EmbeddedKafka(settings) if args.scenario == "kafka-restart" else None
    faults: list[dict] = []
    try:
        for service in services.values():
            service.start()
        wait_until_healthy(f"http://127.0.0.1:{ingress_port}", alive=services["ingress"].alive,
                           timeout_s=90)
        _require_running(services.values(), settle_s=5.0)
        traffic = Traffic(f"http://127.0.0.1:{ingress_port}", settings, channels, args.messages,
                          args.rate)
        sender = threading.Thread(target=traffic.run, name="traffic")
        started = time.monotonic()
        sender.start()
        inject_faults(args.scenario, traffic, services["flow"], kafka, args.kills, args.down, faults)
        sender.join()
        sending_s = time.monotonic() - started
        print(f"  traffic done: {len(traffic.accepted)} accepted in {sending_s:.1f}s "
              f"(refusals retried: {dict(traffic.refusals)})", flush=True)
        rows = wait_until_settled(settings.database_url, traffic.accepted, args.settle)
        result = verdict(rows, twilio_calls_by_recipient(sandbox_url))
    finally:
        for service in reversed(list(services.values())):
            service.stop()
        if kafka is not None and kafka.pid() is None:
            kafka.start()  # leave the stack as we found it

    summary = {
        "run": run_id, "scenario": args.scenario, "faults": faults,
        "messages": args.messages, "accepted": len(traffic.accepted), "gave_up": traffic.gave_up,
        "flow_starts": services["flow"].starts, **result,
        "pass": result["checked"] == len(traffic.accepted) and result.get("failed", 0) == 0
                and traffic.gave_up == 0 and all(f["injected"] for f in faults),
    }
    for failure in result["failures"]:
        print(f"  FAIL {failure['key']}: {'; '.join(failure['problems'])}")
    print(f"{'PASS' if summary['pass'] else 'FAIL'}: {result.get('exactly_once', 0)} of "
          f"{len(traffic.accepted)} accepted messages answered exactly once "
          f"after {len(faults)} fault(s)")
    print(json.dumps(summary))
    return 0 if summary["pass"] else 1


def _require_running(services, settle_s: float) -> None:
    """Every service survived its start-up; otherwise there is nothing to test."""
    time.sleep(settle_s)
    dead = [s for s in services if not s.alive()]
    if dead:
        tails = "\n".join(f"--- {s.name}:\n{s.log_path.read_text(errors='replace')[-2000:]}" for s in dead)
        raise SystemExit(f"exited during start-up: {', '.join(s.name for s in dead)}\n{tails}")


if __name__ == "__main__":
    sys.exit(main())
