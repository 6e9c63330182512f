"""The support page in headless Chromium (Debian's): client-side checks, submit, status."""

from __future__ import annotations

import shutil
import uuid

import psycopg
import pytest

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
    page.get_by_label("Email").fill("jane-at-example.com")
    page.get_by_role("button", name="Send request").click()
    assert "at least 2 characters" in page.locator("#name-error").inner_text()
    assert page.get_by_label("Your name").get_attribute("aria-invalid") == "true"
    assert page.evaluate("document.activeElement.id") == "name"  # focus moves to the first error

    email = f"browser-{uuid.uuid4().hex[:8]}@example.com"
    page.get_by_label("Your name").fill("Jane Browser")
    page.get_by_label("Email").fill(email)
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
