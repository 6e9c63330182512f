"""A lead's reply from the console reaches the channel's API server: console -> reply outbox ->
`fte dispatch` (a real process) -> the local Twilio Messages API, through the twilio SDK."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import httpx
import pytest
from console_apptest import REPO, open_page, texts
from testkit import ServerThread, free_port

sandbox_app = pytest.importorskip("sandbox.app", reason="the channel API sandbox is not in the tree yet")
pytest.importorskip("sinks.dispatcher", reason="the dispatcher is not in the tree yet")




@pytest.fixture
def sandbox_and_dispatcher(console_env, monkeypatch):
    from fte.settings import Settings

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    monkeypatch.setenv("TWILIO_API_BASE", base)
    monkeypatch.setenv("GMAIL_DISCOVERY_URL", f"{base}/discovery/gmail/v1/rest")
    with ServerThread(sandbox_app.create_app(Settings()), port=port, lifespan="auto"):
        dispatcher = subprocess.Popen([sys.executable, "-m", "fte.cli", "dispatch"], cwd=REPO,
                                      env=dict(os.environ), stdout=subprocess.DEVNULL,
                                      stderr=subprocess.PIPE)
        yield base
        dispatcher.terminate()
        try:
            dispatcher.wait(15)
        except subprocess.TimeoutExpired:
            dispatcher.kill()


def test_reply_as_a_human_arrives_at_the_whatsapp_api(console_env, db, sandbox_and_dispatcher):
    at = open_page("escalations", user="ana")
    at.selectbox(key="esc_selected").select(2).run()  # Grace's escalation came by WhatsApp
    at.text_area(key="esc_reply_text").input("Hi Grace, your refund for order 1234 was sent today.")
    at.button(key="esc_reply_send").click().run()
    assert "Reply queued for whatsapp" in texts(at)

    deadline = time.monotonic() + 30
    delivered = []
    while time.monotonic() < deadline and not delivered:
        sent = httpx.get(f"{sandbox_and_dispatcher}/_sandbox/twilio/sent").json()["messages"]
        delivered = [m for m in sent if "refund for order 1234 was sent today" in m.get("body", "")]
        time.sleep(0.5)
    assert len(delivered) == 1, (sent, db.execute(
        "SELECT status, attempts, last_error, recipient FROM reply_outbox WHERE kind = 'human'").fetchall())
    assert delivered[0]["to"].endswith("+15550100200")
    status, provider_ids = db.execute("SELECT status, provider_message_ids FROM reply_outbox "
                                      "WHERE kind = 'human'").fetchone()
    assert status == "sent" and provider_ids == [delivered[0]["sid"]]
