"""Load test of the ingress: web form submissions, signed WhatsApp webhooks, ticket reads.

    .venv/bin/locust -f loadtests/locustfile.py --headless -u 20 -r 5 -t 60s \
        --host http://127.0.0.1:8000

Bounded on purpose: traffic only to 127.0.0.1 / localhost, headless only, and users, spawn
rate and run time are capped (MAX_* below; a missing --run-time means DEFAULT_RUN_TIME_S).
WhatsApp requests carry a valid X-Twilio-Signature computed with TWILIO_AUTH_TOKEN over
PUBLIC_BASE_URL + /webhooks/whatsapp, so run locust with the same settings as the ingress.
The ingress rate-limits per IP and all locust traffic comes from one address: raise
RATE_LIMIT_PER_IP on the ingress under test, or the 429s show up as failures.
Exit code 1 when more than 1% of requests failed.
"""

from __future__ import annotations

import random
import sys
from collections import deque
from pathlib import Path

from locust import HttpUser, between, events, task

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fte.settings import Settings
from loadtests.payloads import (
    SUBMIT_PATH,
    TICKET_PATH,
    WHATSAPP_PATH,
    load_questions,
    require_loopback,
    twilio_signature,
    web_submission,
    webhook_url,
    whatsapp_form,
)

MAX_USERS = 200
MAX_SPAWN_RATE = 50.0
MAX_RUN_TIME_S = 600
DEFAULT_RUN_TIME_S = 60
MAX_FAIL_RATIO = 0.01

SETTINGS = Settings()
DEFAULT_HOST = f"http://127.0.0.1:{SETTINGS.INGRESS_PORT}"
QUESTIONS = load_questions()
# Ticket ids handed out by the ingress, for status reads (shared by all users of a process).
TICKETS: deque[str] = deque(maxlen=5000)


@events.init.add_listener
def _keep_it_local_and_bounded(environment, **_kwargs) -> None:
    require_loopback(environment.host or DEFAULT_HOST)
    options = environment.parsed_options
    if options is None:  # run from Python (tests) with an Environment of its own
        return
    if not options.headless:
        raise SystemExit("run with --headless: the web UI lets anyone pick unbounded load")
    options.num_users = min(options.num_users or 1, MAX_USERS)
    options.spawn_rate = min(options.spawn_rate or 1.0, MAX_SPAWN_RATE)
    options.run_time = min(options.run_time or DEFAULT_RUN_TIME_S, MAX_RUN_TIME_S)


@events.quitting.add_listener
def _fail_on_errors(environment, **_kwargs) -> None:
    total = environment.stats.total
    if total.num_requests and total.fail_ratio > MAX_FAIL_RATIO:
        environment.process_exit_code = 1


def _describe(response) -> str:
    if response.status_code == 0:  # no HTTP answer at all
        return f"no response: {response.error}"
    return f"{response.status_code}: {response.text[:200]}"


class WebCustomer(HttpUser):
    """Submits the support form, then checks on tickets like a customer refreshing the page."""

    host = DEFAULT_HOST
    weight = 3
    wait_time = between(0.2, 1.0)

    def on_start(self) -> None:
        require_loopback(self.host)
        self.rng = random.Random()

    @task(1)
    def submit_form(self) -> None:
        payload = web_submission(self.rng, QUESTIONS, with_phone=self.rng.random() < 0.3)
        with self.client.post(SUBMIT_PATH, json=payload, name=SUBMIT_PATH,
                              catch_response=True) as response:
            if response.status_code != 202:
                response.failure(_describe(response))
                return
            ticket_id = (response.json() or {}).get("ticket_id")
            if not ticket_id:
                response.failure("202 without ticket_id")
                return
            TICKETS.append(ticket_id)

    @task(2)
    def read_ticket(self) -> None:
        if not TICKETS:
            return
        ticket_id = self.rng.choice(TICKETS)
        with self.client.get(TICKET_PATH.format(ticket_id=ticket_id), name="/support/ticket/[id]",
                             catch_response=True) as response:
            if response.status_code != 200:
                response.failure(_describe(response))


class WhatsAppSender(HttpUser):
    """Twilio delivering inbound WhatsApp messages, each signed as Twilio signs it."""

    host = DEFAULT_HOST
    weight = 2
    wait_time = between(0.2, 1.0)

    def on_start(self) -> None:
        require_loopback(self.host)
        self.rng = random.Random()
        self.token = SETTINGS.TWILIO_AUTH_TOKEN.get_secret_value()
        self.url = webhook_url(SETTINGS.PUBLIC_BASE_URL)

    @task
    def inbound_message(self) -> None:
        form = whatsapp_form(self.rng, QUESTIONS, account_sid=SETTINGS.TWILIO_ACCOUNT_SID,
                             to=SETTINGS.TWILIO_WHATSAPP_FROM)
        headers = {"X-Twilio-Signature": twilio_signature(self.token, self.url, form)}
        with self.client.post(WHATSAPP_PATH, data=form, headers=headers, name=WHATSAPP_PATH,
                              catch_response=True) as response:
            if response.status_code != 200:
                response.failure(_describe(response))
