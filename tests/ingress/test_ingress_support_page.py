"""The support page in headless Chromium (Debian's): client-side checks, submit, status."""

from __future__ import annotations

import re
import shutil
import time
import uuid
from pathlib import Path

import httpx
import psycopg
import pytest
from testkit import ServerThread

from fte.kafka import ensure_topics
from fte.settings import Settings
from schema.events import Identifier, IdentifierKind
from schema.migrate import migrate
from sinks.identity import resolve_customer

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture
def page(tmp_path):
    playwright = pytest.importorskip("playwright.sync_api")
    if not shutil.which("chromium") and not __import__("os").path.exists(CHROMIUM):
        pytest.skip("Debian chromium is not installed (apt-get install -y chromium)")
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=CHROMIUM, headless=True,
            args=ARGS)  # a fresh profile directory per test (user_data_dir)
        try:
            yield browser.new_page()
        finally:
            browser.close()


def test_customer_fills_the_form_gets_a_ticket_and_checks_its_status(page, ingress_url, inbound,
                                                                     database_url):
    page.goto(ingress_url + "/")
    # Client-side validation mirrors the server: a short name and a bad email are named.
    page.get_by_label("Your name").fill("J")
    page.get_by_role("textbox", name="Email").fill("jane-at-example.com")
    page.get_by_role("button", name="Send request").click()
    assert "at least 2 characters" in page.locator("#name-error").inner_text()
    assert page.get_by_label("Your name").get_attribute("aria-invalid") == "true"
    assert page.evaluate("document.activeElement.id") == "name"  # focus moves to the first error

    email = f"browser-{uuid.uuid4().hex[:8]}@example.com"
    page.get_by_label("Your name").fill("Jane Browser")
    page.get_by_role("textbox", name="Email").fill(email)
    page.get_by_label("Phone (optional, e.g. +14155550100)").fill("+14155550123")
    page.get_by_label("Category").select_option("billing")
    page.get_by_label("Subject").fill("Charged twice")
    page.get_by_label("How can we help?").fill("My card was charged twice for order 5521.")
    page.keyboard.press("Tab")
    page.get_by_role("button", name="Send request").press("Enter")  # keyboard only
    ticket = page.locator("#ticket-number")
    ticket.wait_for(timeout=15_000)
    ticket_id = ticket.inner_text()
    assert ticket_id.startswith("T-")
    assert page.get_by_role("status").first.inner_text().startswith("Thank you!")

    [(_, event)] = inbound("web", expect=1)
    assert event["ticket_id"] == ticket_id and event["metadata"]["category"] == "billing"

    assert page.get_by_label("Ticket number").input_value() == ticket_id
    page.get_by_role("button", name="Check status").click()
    state = page.locator("#ticket-state")
    state.wait_for(timeout=15_000)
    assert state.inner_text().startswith("Status: open.")

    # The answer appears without a click: the open ticket refreshes itself.
    with psycopg.connect(database_url) as conn:
        conn.execute(
            "INSERT INTO messages (channel, channel_message_id, direction, author, ticket_id, body,"
            " occurred_at) VALUES ('web', %s, 'outbound', 'agent', %s, 'Refund on its way.', now())",
            (f"reply-{ticket_id}", ticket_id))
        conn.execute("UPDATE tickets SET status = 'answered' WHERE id = %s", (ticket_id,))
    page.get_by_text("Refund on its way.", exact=False).wait_for(timeout=30_000)
    assert page.locator("#ticket-state").inner_text().startswith("Status: answered.")
    assert page.evaluate("location.hash") == f"#{ticket_id}"

    # The customer replies in the same ticket.
    page.get_by_label("Your reply").fill("Thanks, and the second charge?")
    page.get_by_role("button", name="Send reply").click()
    page.locator("#reply-status.ok").wait_for(timeout=15_000)
    replies = [e for _, e in inbound("web", expect=2) if e["metadata"].get("ticket_reply")]
    assert [(e["ticket_id"], e["body"]) for e in replies] == [(ticket_id, "Thanks, and the second charge?")]


def test_unknown_ticket_number_shows_an_error(page, ingress_url):
    page.goto(ingress_url + "/")
    page.get_by_label("Ticket number").fill("T-00000000000000000000")
    page.get_by_role("button", name="Check status").click()
    page.locator("#ticket-status.fail").wait_for(timeout=15_000)
    assert "could not find" in page.locator("#ticket-status").inner_text()


@pytest.fixture
def verify_ingress(fresh_database, ingress_settings, sandbox_url, mailbox):
    """The ingress on a database of its own, with the dispatcher delivering codes to the
    local Gmail API (as in test_verify.py)."""
    migrate(fresh_database)
    ensure_topics(ingress_settings.kafka_bootstrap, ingress_settings.TOPIC_PREFIX)
    ingress = ingress_settings.model_copy(update={"DATABASE_URL": fresh_database})
    from ingress.app import create_app
    from sinks.dispatcher import build_dispatcher

    sender = build_dispatcher(Settings(
        DATABASE_URL=fresh_database, KAFKA_BOOTSTRAP_SERVERS=ingress.kafka_bootstrap,
        TOPIC_PREFIX=ingress.TOPIC_PREFIX, GMAIL_MAILBOX=mailbox,
        GMAIL_DISCOVERY_URL=f"{sandbox_url}/discovery/gmail/v1/rest", TWILIO_API_BASE=sandbox_url,
        DISPATCH_RETRY_BASE_S=0.2, DISPATCH_RETRY_MAX_S=1), sweep_s=0.3).start()
    try:
        with ServerThread(create_app(ingress)) as url:
            yield {"url": url, "db": fresh_database, "sandbox": sandbox_url, "mailbox": mailbox}
    finally:
        sender.stop()


def sent_mail(sandbox: str, mailbox: str, to: str, timeout: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        mails = [m for m in httpx.get(f"{sandbox}/_sandbox/gmail/sent", params={"mailbox": mailbox})
                 .json()["data"] if m["to"] == to]
        if mails:
            return mails[0]
        time.sleep(0.3)
    raise AssertionError(f"no mail to {to}")


def test_customer_confirms_the_ticket_email_with_the_emailed_code(page, verify_ingress):
    url, db = verify_ingress["url"], verify_ingress["db"]
    email = f"vera.{uuid.uuid4().hex[:6]}@example.com"
    page.goto(url + "/")
    page.get_by_label("Your name").fill("Vera Browser")
    page.get_by_role("textbox", name="Email").fill(email)
    page.get_by_label("Phone (optional, e.g. +14155550100)").fill("+14155550177")
    page.get_by_label("Subject").fill("Torn dress")
    page.get_by_label("How can we help?").fill("My dress arrived torn, order 7781.")
    page.get_by_role("button", name="Send request").click()
    ticket_id = page.locator("#ticket-number").inner_text(timeout=15_000)
    page.get_by_role("button", name="Check status").click()
    page.locator("#ticket-state").wait_for(timeout=15_000)

    # Only the kinds the ticket has are offered, masked; the reason is given.
    section = page.get_by_role("region", name="Confirm your email / phone")
    section.wait_for(timeout=15_000)
    assert "email you our answers" in section.inner_text()
    contacts = page.locator("#verify-contacts li").all_inner_texts()
    assert contacts[0].startswith("Your email: v***@example.com") and email not in str(contacts)
    assert contacts[1].startswith("Your phone: +14***77") and "+14155550177" not in str(contacts)

    # Before the flow has taken the ticket the API refuses (409): its detail is shown as text.
    page.get_by_role("button", name="Send a code to my email").click()
    page.locator("#verify-status.fail").wait_for(timeout=15_000)
    assert "still being processed" in page.locator("#verify-status").inner_text()

    with psycopg.connect(db) as conn, conn.transaction():  # what the support flow does
        cid, _ = resolve_customer(conn, [Identifier(kind=IdentifierKind.EMAIL, value=email)],
                                  channel="web", display_name="Vera Browser")
        conn.execute("UPDATE tickets SET customer_id = %s WHERE id = %s", (cid, ticket_id))

    page.get_by_role("button", name="Send a code to my email").click()
    page.locator("#verify-status.ok").wait_for(timeout=15_000)
    assert re.match(r"Code sent to v\*\*\*@example\.com .*valid 15 minutes",
                    page.locator("#verify-status").inner_text())
    code_box = page.get_by_label("6-digit code")
    assert code_box.get_attribute("inputmode") == "numeric"
    assert code_box.get_attribute("autocomplete") == "one-time-code"
    assert page.evaluate("document.activeElement.id") == "verify-code"

    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "support_page_verify_code_sent.png"), full_page=True)

    mail = sent_mail(verify_ingress["sandbox"], verify_ingress["mailbox"], email)
    code = re.search(r"enter the code (\d{6})", mail["text"]).group(1)
    wrong = "000000" if code != "000000" else "111111"
    code_box.fill(wrong)
    page.get_by_role("button", name="Confirm", exact=True).click()
    page.locator("#verify-status.fail").wait_for(timeout=15_000)
    assert "wrong or has expired" in page.locator("#verify-code-error").inner_text()
    assert "wrong or expired code" in page.locator("#verify-status").inner_text()  # the API's detail
    assert code_box.get_attribute("aria-invalid") == "true"

    code_box.fill(code)
    page.get_by_role("button", name="Confirm", exact=True).click()
    page.get_by_text("your email is confirmed").wait_for(timeout=15_000)
    page.locator("#verify-contacts li", has_text="Confirmed").wait_for(timeout=15_000)
    assert page.get_by_role("button", name="Send a code to my email").count() == 0
    assert page.get_by_role("button", name="Send a code to my phone").count() == 1
    assert page.locator("#verify-form").is_hidden()
    with psycopg.connect(db) as conn:
        assert conn.execute("SELECT contact_email_verified FROM tickets WHERE id = %s",
                            (ticket_id,)).fetchone() == (True,)
    page.screenshot(path=str(ARTIFACTS / "support_page_verify.png"), full_page=True)
