import json
import logging

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
    assert lines[0]["body"] == "call me at +1******0100"
    assert lines[1]["event"] == "user b***@example.org failed"
