"""`fte up` runs the local channel APIs only in development without real credentials, and
points the services' SDKs at them."""

from __future__ import annotations

from pathlib import Path

from pydantic import SecretStr

from fte.commands.run import SERVICES
from fte.commands.sandbox import sandbox_environment, sandbox_needed
from fte.settings import Settings


def test_sandbox_runs_only_in_development_without_real_credentials(tmp_path: Path):
    assert sandbox_needed(Settings(ENVIRONMENT="development"))
    assert not sandbox_needed(Settings(ENVIRONMENT="test"))
    assert not sandbox_needed(Settings(ENVIRONMENT="development",
                                       GMAIL_CREDENTIALS_FILE=tmp_path / "sa.json"))
    assert not sandbox_needed(Settings(ENVIRONMENT="development",
                                       TWILIO_AUTH_TOKEN=SecretStr("a-real-token")))
    assert {"ingress", "sandbox"} <= {name for name, _ in SERVICES}


def test_sandbox_environment_points_sdks_at_the_local_server_without_overriding():
    env = sandbox_environment(Settings(ENVIRONMENT="development", SANDBOX_PORT=8123))
    assert env["GMAIL_DISCOVERY_URL"] == "http://127.0.0.1:8123/discovery/gmail/v1/rest"
    assert env["TWILIO_API_BASE"] == "http://127.0.0.1:8123"
    assert len(env["GMAIL_PUSH_VERIFICATION_TOKEN"]) >= 24
    kept = sandbox_environment(Settings(ENVIRONMENT="development", TWILIO_API_BASE="http://x",
                                        GMAIL_PUSH_VERIFICATION_TOKEN=SecretStr("mine")))
    assert "TWILIO_API_BASE" not in kept and "GMAIL_PUSH_VERIFICATION_TOKEN" not in kept
