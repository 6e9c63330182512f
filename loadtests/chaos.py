"""Chaos run: traffic on every channel while processes die, brokers restart and APIs fail.

    python -m loadtests.chaos --scenario all --messages 1000
    python -m loadtests.chaos --scenario flow-kill --messages 300
    python -m loadtests.chaos --scenario all --soak 30 --rate 10

It runs its own `fte sandbox` (local Gmail/Twilio APIs, behind a fault-injecting proxy),
`fte ingress`, `fte flow`, `fte relay`, `fte dispatch` and `fte metrics-flow` on a fresh
topic prefix and recovery directory, against the stack of the current settings, and sends web, WhatsApp and
email traffic (Pub/Sub pushes) through the ingress. Faults, spread evenly over the traffic
(`all` = every one, the support flow killed three times): kill -9 of the support flow, the
dispatcher, the metrics flow or the ingress; a Kafka or Postgres restart; a second flow
instance started by mistake; a 60 s Twilio 503 storm; Gmail API 5xx; a silent Pub/Sub; a
slow channel API (30 s responses). Run it on a stack of its own (it restarts the brokers):
`FTE_DATA_DIR=.fte/chaos FTE_KAFKA_PORT=38092 FTE_KAFKA_CONTROLLER_PORT=38093 FTE_PG_PORT=38432`.

The last line is JSON: accepted, answered_once, lost and duplicates counted at the channel
APIs (see loadtests/chaos_verdict.py), events_lost, dead_letters, faults injected, seconds.
`--soak MINUTES` runs steady traffic that long with a fault every `--fault-every` minutes and
adds each service's RSS at start and end and the CPU per accepted message per interval.
Exit code 0 only when nothing was lost, doubled or missing.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import httpx
import psutil
import psycopg

from fte.commands.sandbox import sandbox_environment
from fte.settings import Settings
from fte.supervisor import Service, Supervisor
from loadtests.chaos_faults import ALL, INJECTORS, Rig
from loadtests.chaos_proxy import ProxyState, create_app
from loadtests.chaos_traffic import CHANNELS, Traffic
from loadtests.chaos_verdict import api_calls, db_rows, events_by_key, judge
from loadtests.payloads import wait_until_healthy
from schema.topics import SUPPORT_EVENTS, topic_name

SERVICES = {"sandbox": ["sandbox"], "ingress": ["ingress"], "flow": ["flow"],
            "relay": ["relay"],  # publishes the flow's event outbox to support.events
            "dispatch": ["dispatch"], "metrics-flow": ["metrics-flow"]}
NEEDS_EMBEDDED = {"kafka-restart", "postgres-restart"}


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_proxy(upstream: str, state: ProxyState) -> str:
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(upstream, state), host="127.0.0.1", port=port,
                                           log_level="warning", access_log=False, timeout_keep_alive=120))
    threading.Thread(target=server.run, daemon=True, name="chaos-proxy").start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    return f"http://127.0.0.1:{port}"


def run_environment(base: Settings, run_dir: Path) -> tuple[dict[str, str], Settings, str, str]:
    ingress_port, sandbox_port = free_port(), free_port()
    run_id = run_dir.name
    env = {**os.environ,
           "TOPIC_PREFIX": f"chaos{run_id}.", "RECOVERY_DIR": str(run_dir / "recovery"),
           "INGRESS_HOST": "127.0.0.1", "INGRESS_PORT": str(ingress_port),
           "PUBLIC_BASE_URL": f"http://127.0.0.1:{ingress_port}", "SANDBOX_PORT": str(sandbox_port),
           # One client address sends everything: the per-IP limit would refuse the run itself.
           "RATE_LIMIT_PER_IP": "1000000/minute", "RATE_LIMIT_PER_IDENTITY": "1000/minute",
           "DEMO_TRAFFIC_RATE": "0", "LOG_LEVEL": "WARNING",
           # A mailbox of its own: the ingress keeps each mailbox's history cursor in Postgres,
           # and a fresh local Gmail API starts its history again from 1.
           "GMAIL_MAILBOX": f"support-{run_id}@example.com"}
    for key in ("TWILIO_API_BASE", "GMAIL_DISCOVERY_URL", "GMAIL_PUSH_VERIFICATION_TOKEN"):
        env.pop(key, None)
    settings = Settings(**{k: v for k, v in env.items() if k in Settings.model_fields})
    env.update(sandbox_environment(settings))
    settings = Settings(**{k: v for k, v in env.items() if k in Settings.model_fields})
    sandbox_url = f"http://127.0.0.1:{sandbox_port}"
    return env, settings, sandbox_url, f"http://127.0.0.1:{ingress_port}"


def schedule(scenario: str) -> list[str]:
    return list(ALL) if scenario == "all" else [] if scenario == "none" else [scenario]


class Sampler(threading.Thread):
    """CPU seconds and RSS of every service, per interval (processes restarted are followed)."""

    def __init__(self, services: dict[str, Service], traffic: Traffic, interval_s: float):
        super().__init__(daemon=True, name="chaos-sampler")
        self.services, self.traffic, self.interval_s = services, traffic, interval_s
        self.rows: list[dict] = []
        self.rss_start: dict[str, float] = {}
        self.rss_end: dict[str, float] = {}
        self._last: dict[str, tuple[int, float]] = {}
        self._halt = threading.Event()

    def _measure(self) -> dict[str, tuple[int, float, float]]:
        out = {}
        for name, service in self.services.items():
            if service.alive():
                try:
                    p = psutil.Process(service.proc.pid)
                    t = p.cpu_times()
                    out[name] = (p.pid, t.user + t.system, p.memory_info().rss / 2**20)
                except psutil.Error:
                    pass
        return out

    def run(self) -> None:
        started = time.monotonic()
        first = self._measure()
        self.rss_start = {n: round(m[2], 1) for n, m in first.items()}
        self._last = {n: (m[0], m[1]) for n, m in first.items()}
        accepted = len(self.traffic.accepted)
        while not self._halt.wait(self.interval_s):
            now = self._measure()
            row = {"minute": round((time.monotonic() - started) / 60, 1)}
            total_cpu = 0.0
            for name, (pid, cpu, _rss) in now.items():
                last_pid, last_cpu = self._last.get(name, (None, 0.0))
                delta = cpu - last_cpu if pid == last_pid else cpu
                total_cpu += delta
                row[f"{name}_cpu_s"] = round(delta, 2)
                self._last[name] = (pid, cpu)
            messages = len(self.traffic.accepted) - accepted
            accepted += messages
            row["messages"] = messages
            row["cpu_ms_per_message"] = round(total_cpu * 1000 / messages, 1) if messages else None
            self.rows.append(row)
            print(f"  soak {json.dumps(row)}", flush=True)
            self.rss_end = {n: round(m[2], 1) for n, m in now.items()}

    def stop(self) -> None:
        self._halt.set()


def thirds(rows: list[dict], names: list[str]) -> dict[str, list[float | None]]:
    """Per service: CPU ms per accepted message over the first and the last third of the run."""
    third = max(1, len(rows) // 3)
    out = {}
    for name in names:
        pair = []
        for part in (rows[:third], rows[-third:]):
            messages = sum(r["messages"] for r in part)
            cpu = sum(r.get(f"{name}_cpu_s", 0.0) for r in part)
            pair.append(round(cpu * 1000 / messages, 1) if messages else None)
        out[name] = pair
    return out


def supervise_until(supervisor: Supervisor, halt: threading.Event, tick_s: float = 0.5) -> None:
    while not halt.wait(tick_s):
        supervisor.tick()


def wait_until_settled(database_url: str, traffic: Traffic, timeout_s: float) -> None:
    """Until every accepted message has a reply on its way out (or the timeout passes)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        keys = [a.key for a in traffic.accepted]
        try:
            rows = db_rows(database_url, keys)
        except psycopg.Error:
            time.sleep(3)
            continue
        pending = sum(1 for k in keys if not (rows[k]["sent"] or (k.startswith("web:") and rows[k]["outbound"])))
        if pending == 0:
            return
        print(f"  waiting for replies: {pending} of {len(keys)} not sent yet", flush=True)
        time.sleep(5)


def dead_letters(database_url: str, prefix: str) -> int:
    with psycopg.connect(database_url) as conn:
        return conn.execute("SELECT count(*) FROM dead_letters WHERE source_topic LIKE %s",
                            (prefix.replace("_", r"\_") + "%",)).fetchone()[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", choices=["all", "none", *INJECTORS], default="all")
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=20.0, help="messages per second")
    parser.add_argument("--soak", type=float, default=0.0, metavar="MINUTES",
                        help="steady traffic this long (messages = rate x duration), faults recurring")
    parser.add_argument("--fault-every", type=float, default=3.0, help="soak: minutes between faults")
    parser.add_argument("--down", type=float, default=3.0, help="seconds a killed process stays down")
    parser.add_argument("--storm", type=float, default=60.0, help="seconds an API fault lasts")
    parser.add_argument("--channels", default=",".join(CHANNELS))
    parser.add_argument("--settle", type=float, default=600.0, help="seconds to wait for the last replies")
    args = parser.parse_args(argv)
    channels = tuple(c.strip() for c in args.channels.split(",") if c.strip())
    if not set(channels) <= set(CHANNELS) or not 0 < args.rate <= 500:
        parser.error("--channels takes web, whatsapp, email; --rate 0..500")
    total = int(args.rate * args.soak * 60) if args.soak else args.messages
    if not 1 <= total <= 100_000:
        parser.error("1..100000 messages")
    base = Settings()
    names = schedule(args.scenario)
    if NEEDS_EMBEDDED & set(names) and not (base.embedded_kafka and base.embedded_postgres):
        parser.error("kafka/postgres restarts need the embedded stack")

    run_dir = base.FTE_DATA_DIR / "chaos" / uuid.uuid4().hex[:8]
    run_dir.mkdir(parents=True)
    env, settings, sandbox_url, ingress_url = run_environment(base, run_dir)
    subprocess.run([sys.executable, "-m", "fte.cli", "up", "--no-services"], env=env, check=True,
                   stdout=subprocess.DEVNULL)
    proxy = ProxyState()
    proxy_url = start_proxy(sandbox_url, proxy)
    # The dispatcher and the ingress reach the channel APIs through the proxy.
    api_env = {**env, "TWILIO_API_BASE": proxy_url, "GMAIL_DISCOVERY_URL": f"{proxy_url}/discovery/gmail/v1/rest"}
    services = {name: Service(name, argv, env=env if name == "sandbox" else api_env,
                              log_path=run_dir / f"{name}.log")
                for name, argv in SERVICES.items()}
    # Crash loops are recorded, not written to the stack's alerts: the run reports them.
    crash_loops: Counter = Counter()
    supervisor = Supervisor(list(services.values()), lambda alert: crash_loops.update([alert.detail["subject"]]))
    traffic = Traffic(settings, ingress_url, sandbox_url, total, args.rate, channels)
    from fte.stack.kafka import EmbeddedKafka
    from fte.stack.postgres import EmbeddedPostgres

    rig = Rig(services, supervisor, proxy, traffic,
              EmbeddedKafka(settings) if settings.embedded_kafka else None,
              EmbeddedPostgres(settings) if settings.embedded_postgres else None,
              down_s=args.down, storm_s=args.storm)
    print(f"chaos run {run_dir.name}: {args.scenario}, {total} messages at {args.rate}/s on "
          f"{', '.join(channels)}; logs in {run_dir}", flush=True)
    faults: Counter = Counter()
    log: list[dict] = []
    sampler = Sampler(services, traffic, 30.0) if args.soak else None
    started = time.monotonic()
    halt = threading.Event()
    try:
        supervisor.start_all()
        watch = threading.Thread(target=supervise_until, args=(supervisor, halt), daemon=True,
                                 name="chaos-supervisor")
        watch.start()
        wait_until_healthy(ingress_url, alive=services["ingress"].alive, timeout_s=120)
        time.sleep(5)
        dead = [s.name for s in services.values() if not s.alive()]
        if dead:
            raise SystemExit(f"exited during start-up: {dead}; see {run_dir}")
        sender = threading.Thread(target=traffic.run, name="traffic", daemon=True)
        sender.start()
        if sampler:
            sampler.start()
        plan = names * max(1, int(args.soak // args.fault_every)) if args.soak else names
        plan = plan[:max(0, int(args.soak // args.fault_every))] if args.soak else plan
        for n, name in enumerate(plan, start=1):
            if args.soak:  # one fault every --fault-every minutes
                time.sleep(max(0.0, started + n * args.fault_every * 60 - time.monotonic()))
            else:  # spread over the traffic
                mark = total * n // (len(plan) + 1)
                while traffic.sent < mark and not traffic.finished:
                    time.sleep(0.2)
            print(f"  fault {name} after {traffic.sent} messages", flush=True)
            at = time.monotonic()
            try:
                record = INJECTORS[name](rig)
            except Exception as exc:  # noqa: BLE001 -- a fault that could not be undone is reported, the run goes on
                record = {"injected": True, "error": f"{type(exc).__name__}: {str(exc)[:300]}"}
                rig.notes.append(f"{name}: {record['error']}")
            if record["injected"]:
                faults[name] += 1
            log.append({"fault": name, "after": traffic.sent, "seconds": round(time.monotonic() - at, 1),
                        **{k: v for k, v in record.items() if k != "injected"}})
        if args.soak:  # steady traffic for the stated time, whatever got through
            sender.join(max(0.0, started + args.soak * 60 - time.monotonic()))
            traffic.stop()
        sender.join()
        print(f"  traffic done: {len(traffic.accepted)} accepted, refusals retried "
              f"{dict(traffic.refusals)}", flush=True)
        wait_until_settled(settings.database_url, traffic, args.settle)
        if sampler:
            sampler.stop()
            sampler.join(5)
        keys = [a.key for a in traffic.accepted]
        verdict = judge(traffic.accepted, db_rows(settings.database_url, keys), api_calls(sandbox_url),
                        events_by_key(settings.kafka_bootstrap, topic_name(SUPPORT_EVENTS, settings.TOPIC_PREFIX)))
        letters = dead_letters(settings.database_url, settings.TOPIC_PREFIX)
    finally:
        traffic.stop()
        halt.set()
        supervisor.stop_all()
        if rig.kafka is not None and rig.kafka.pid() is None:
            rig.kafka.start()
        if rig.postgres is not None and rig.postgres.pid() is None:
            rig.postgres.start()

    for failure in verdict["failures"][:30]:
        print(f"  FAIL {failure['key']}: {failure['problem']}")
    for entry in log:
        print(f"  fault log {json.dumps(entry)}")
    for note in rig.notes:
        print(f"  note: {note}")
    summary = {"accepted": len(traffic.accepted), "answered_once": verdict["answered_once"],
               "lost": verdict["lost"] + traffic.gave_up, "duplicates": verdict["duplicates"],
               "events_lost": verdict["events_lost"], "dead_letters": letters, "faults": dict(faults),
               "seconds": round(time.monotonic() - started, 1),
               "restarts": dict(supervisor.restarts), "crash_loops": dict(crash_loops)}
    if sampler:
        summary["rss_mb_start"], summary["rss_mb_end"] = sampler.rss_start, sampler.rss_end
        summary["cpu_ms_per_message"] = [r["cpu_ms_per_message"] for r in sampler.rows]
        summary["cpu_ms_per_message_first_last_third"] = thirds(sampler.rows, list(services))
    ok = (summary["lost"] == 0 and summary["duplicates"] == 0 and summary["events_lost"] == 0
          and not rig.notes and sum(faults.values()) == len(log))
    print(json.dumps(summary))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
