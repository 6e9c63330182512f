"""`fte up`: set up and run the whole system on its embedded default.

Starts the stack, applies migrations, creates topics and loads the demo knowledge base,
then runs each long-lived service as a child process (fte/supervisor.py: restarts with
back-off, crash-loop alerts) and stops them all on Ctrl-C or SIGTERM.
Services register themselves in `SERVICES`.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

from fte import stack
from fte.commands.sandbox import sandbox_environment, sandbox_needed
from fte.commands.stack import print_status
from fte.kafka import ensure_topics
from fte.logs import get_logger
from fte.settings import REPO_ROOT
from fte.supervisor import supervise
from schema.migrate import migrate

log = get_logger(__name__)

# (name, argv after `python -m fte.cli`); each is a long-running `fte` subcommand.
SERVICES: list[tuple[str, list[str]]] = [
    # Started in this order: the channel APIs and the ingress before anything that calls them.
    ("sandbox", ["sandbox"]),  # development without real Gmail/Twilio credentials only
    ("ingress", ["ingress"]),
    ("support-flow", ["flow"]),
    ("dispatcher", ["dispatch"]),
    ("event-relay", ["relay"]),  # event outbox -> support.events, support.escalations
    ("metrics-flow", ["metrics-flow"]),
    ("console", ["console"]),
    ("notify", ["notify"]),  # escalations and alerts to staff (email, Slack webhook)
    ("close-quiet-tickets", ["tickets", "close-quiet", "--every", "900"]),
    ("daily-report", ["report", "daily", "--send", "--at", "06:00"]),  # to REPORT_RECIPIENTS
    ("demo-traffic", ["demo", "traffic", "--service"]),  # development only; DEMO_TRAFFIC_RATE
]

# Set-up steps run after migrations and topics: (name, argv), each must be idempotent.
SETUP_STEPS: list[tuple[str, list[str]]] = [
    ("console-password", ["console", "dev-password"]),
    ("demo-knowledge-base", ["kb", "load", str(REPO_ROOT / "flows" / "kb_demo")]),
    ("routing-model", ["model", "train", "--if-absent"]),  # flows/routing.py; once
]


def register(subparsers) -> None:
    p = subparsers.add_parser("up", help="set up and run the whole system (embedded default)")
    p.add_argument("--no-services", action="store_true", help="set up only, then exit")
    p.set_defaults(func=run)


def run(args, settings) -> int:
    started = time.monotonic()
    print_status(stack.up(settings))
    migrate(settings.database_url)
    ensure_topics(settings.kafka_bootstrap, settings.TOPIC_PREFIX)
    for name, argv in SETUP_STEPS:
        log.info("setup.step", step=name)
        subprocess.run([sys.executable, "-m", "fte.cli", *argv], check=True)
    print(f"stack, schema and topics ready in {time.monotonic() - started:.1f}s")
    if args.no_services or not SERVICES:
        return 0
    services = SERVICES
    if sandbox_needed(settings):
        os.environ.update(sandbox_environment(settings))  # children use the local channel APIs
    else:
        services = [s for s in SERVICES if s[0] != "sandbox"]
    return supervise(services, settings)
