"""Production is the default environment, and it refuses the development secrets."""

from __future__ import annotations

import pytest
from pydantic import SecretStr, ValidationError

from fte.settings import Settings

PRODUCTION = {"DATABASE_URL": "postgresql://fte@db/fte", "KAFKA_BOOTSTRAP_SERVERS": "kafka:9092"}


def test_production_is_the_default(monkeypatch):
    monkeypatch.delenv("ENVIRONMENT", raising=False)
    assert Settings(_env_file=None, **PRODUCTION).ENVIRONMENT == "production"


@pytest.mark.parametrize("field,value", [
    ("TWILIO_AUTH_TOKEN", SecretStr("dev-twilio-auth-token")),
    ("GMAIL_PUSH_VERIFICATION_TOKEN", SecretStr("shared")),
    ("GMAIL_PUSH_CERTS_URL", "http://127.0.0.1:9/certs"),
    ("CONSOLE_DEV_PASSWORD", SecretStr("lead-password")),
])
def test_production_refuses_development_secrets(field, value):
    with pytest.raises(ValidationError, match=field):
        Settings(_env_file=None, ENVIRONMENT="production", **PRODUCTION, **{field: value})
    Settings(_env_file=None, ENVIRONMENT="test", **{field: value})  # tests may use them


def test_a_process_that_uses_twilio_refuses_the_default_token_in_production():
    unset = Settings(_env_file=None, ENVIRONMENT="production", **PRODUCTION)
    with pytest.raises(ValueError, match="TWILIO_AUTH_TOKEN"):
        unset.twilio_auth_token()
    real = Settings(_env_file=None, ENVIRONMENT="production", **PRODUCTION,
                    TWILIO_AUTH_TOKEN=SecretStr("a-real-token"))
    assert real.twilio_auth_token() == "a-real-token"
    assert Settings(_env_file=None, ENVIRONMENT="development").twilio_auth_token() == "dev-twilio-auth-token"


def test_the_generated_console_password_is_not_loaded_in_production(tmp_path):
    from console.auth import DEV_USER, load_users

    (tmp_path / "console").mkdir()
    (tmp_path / "console" / "dev-password").write_text("generated\n")
    dev = Settings(_env_file=None, ENVIRONMENT="development", FTE_DATA_DIR=tmp_path)
    assert DEV_USER in load_users(dev)
    prod = Settings(_env_file=None, ENVIRONMENT="production", FTE_DATA_DIR=tmp_path, **PRODUCTION)
    assert DEV_USER not in load_users(prod)


def test_local_stack_commands_run_without_environment_but_services_do_not(tmp_path):
    """`fte stack` manages the embedded stack (development); a service started bare is production."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items()
           if k not in ("ENVIRONMENT", "DATABASE_URL", "KAFKA_BOOTSTRAP_SERVERS")}
    env["FTE_DATA_DIR"] = str(tmp_path)
    stack = subprocess.run([sys.executable, "-m", "fte.cli", "stack", "status"], env=env, cwd=tmp_path,
                           capture_output=True, text=True, timeout=120)
    # (exit 3: nothing running in this empty data dir) -- but no settings refusal
    assert "ValidationError" not in stack.stderr and stack.returncode in (0, 3), stack.stderr[-2000:]
    ingress = subprocess.run([sys.executable, "-m", "fte.cli", "ingress"], env=env, cwd=tmp_path,
                             capture_output=True, text=True, timeout=120)
    assert ingress.returncode == 2 and "must be set in production" in ingress.stderr
    assert "Traceback" not in ingress.stderr, ingress.stderr[-2000:]
    # Help never depends on the environment.
    usage = subprocess.run([sys.executable, "-m", "fte.cli", "--help"], env=env, cwd=tmp_path,
                           capture_output=True, text=True, timeout=120)
    assert usage.returncode == 0 and "metrics-flow" in usage.stdout, usage.stderr[-2000:]
