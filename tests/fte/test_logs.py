import json
import logging

import pytest

from fte.logs import configure_logging, get_logger, redact_text


def test_emails_and_phones_are_masked_in_text():
    text = "from John.Doe@example.com via whatsapp:+15550100100 or +1 555 010 0100"
    out = redact_text(text)
    assert "j***@example.com".lower() in out.lower()
    assert "John.Doe" not in out
    assert out.count("+1******0100") == 2


def test_structured_log_lines_are_json_with_pii_redacted(capsys):
    configure_logging("INFO")
    get_logger("test").info("inbound", sender="jane@example.com", body="call me at +15550100100")
    logging.getLogger("library").warning("user bob@example.org failed")
    lines = [json.loads(line) for line in capsys.readouterr().err.strip().splitlines()]
    assert lines[0]["sender"] == "j***@example.com"
    assert lines[0]["body"] == "[23 redacted]"  # message text: only its length
    assert lines[1]["event"] == "user b***@example.org failed"


@pytest.mark.parametrize("text,leaked", [
    ("GET /customers/lookup?email=jane.doe%40example.com", "jane.doe"),
    ("call (415) 555-0100 today", "555-0100"),
    ("call 415-555-0100 today", "415-555"),
    ("ring 07700 900123", "07700 900"),
    ("ticket T-D7A90AED013CFBE0703ADDD26D189B03 opened", "D7A90AED013CFBE0703ADDD26D189B03"),
])
def test_percent_encoded_emails_national_phones_and_ticket_ids_are_masked(text, leaked):
    assert leaked not in redact_text(text)


@pytest.mark.parametrize("text", ["at 2026-11-28T02:29:58Z", "from 192.168.100.200:8000",
                                  "offset=123456789", "took 0.123 s"])
def test_dates_addresses_and_counters_are_left_alone(text):
    assert redact_text(text) == text


def test_message_text_fields_are_replaced_by_their_length_at_any_depth():
    from fte.logs import redact_pii

    out = redact_pii(None, "info", {"event": "x", "reply": {"body": "Hi Jane, your order...",
                                                            "parts": ["a", "b"]}, "text": None})
    assert out["reply"] == {"body": "[22 redacted]", "parts": "[2 redacted]"} and out["text"] is None


def test_uvicorn_access_lines_and_tracebacks_are_redacted(capfd):
    """A real uvicorn server with our logging: no query string, no email, no phone."""
    import threading
    import time

    import httpx
    import uvicorn
    from fastapi import FastAPI

    app = FastAPI()

    @app.get("/customers/lookup")
    def lookup(email: str):
        raise RuntimeError(f"lookup failed for {email} at +15550100100")

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_config=None,
                                           access_log=True, log_level="info"))
    configure_logging("INFO")
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        assert thread.is_alive()
        time.sleep(0.02)
    url = f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    try:
        assert httpx.get(f"{url}/customers/lookup", params={"email": "jane@example.com"}).status_code == 500
    finally:
        server.should_exit = True
        thread.join(15)
    err = capfd.readouterr().err
    lines = [json.loads(line) for line in err.strip().splitlines() if line.startswith("{")]
    access = [x for x in lines if x.get("logger") == "uvicorn.access"]
    assert access and "/customers/lookup" in access[0]["event"] and "?" not in access[0]["event"]
    tracebacks = [x for x in lines if "exception" in x]
    assert tracebacks and "RuntimeError" in tracebacks[0]["exception"]
    assert "jane@example.com" not in err and "jane%40example.com" not in err
    assert "5550100100" not in err
