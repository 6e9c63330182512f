"""Who may use the console: bcrypt-hashed users from the environment, plus a development user.

`CONSOLE_USERS="ana:$2b$12$...,ben:$2b$12$..."` (hashes from `fte console hash-password`).
Outside production, user `lead` may log in with CONSOLE_DEV_PASSWORD, or with the random
password `fte up` writes once to FTE_DATA_DIR/console/dev-password (mode 0600).
Pure functions: the Streamlit session handling lives in `console.session`.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import bcrypt

from fte.settings import Settings

DEV_USER = "lead"
MAX_PASSWORD_BYTES = 72  # bcrypt ignores anything longer; refuse rather than truncate silently

# Checked against when the user is unknown, so a wrong name costs as long as a wrong password.
_DUMMY_HASH = bcrypt.hashpw(b"not-a-user", bcrypt.gensalt(rounds=10))


def hash_password(password: str) -> str:
    raw = password.encode()
    if not raw or len(raw) > MAX_PASSWORD_BYTES:
        raise ValueError(f"password must be 1-{MAX_PASSWORD_BYTES} bytes")
    return bcrypt.hashpw(raw, bcrypt.gensalt(rounds=12)).decode()


def parse_users(spec: str | None) -> dict[str, bytes]:
    """`user:hash[,user:hash]` -> {user: hash}; malformed entries raise naming the entry."""
    users: dict[str, bytes] = {}
    for entry in (spec or "").split(","):
        entry = entry.strip()
        if not entry:
            continue
        name, sep, hashed = entry.partition(":")
        if not sep or not name or not hashed.startswith("$2"):
            raise ValueError(f"CONSOLE_USERS entry {name or entry[:8]!r} is not user:bcrypt-hash")
        users[name.strip()] = hashed.strip().encode()
    return users


def dev_password_file(settings: Settings) -> Path:
    return settings.FTE_DATA_DIR / "console" / "dev-password"


def ensure_dev_password(settings: Settings) -> tuple[str, bool]:
    """The development password, created (random, 0600) when missing: (password, created)."""
    path = dev_password_file(settings)
    if path.exists():
        return path.read_text().strip(), False
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    password = secrets.token_urlsafe(15)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(password + "\n")
    return password, True


def needs_dev_password(settings: Settings) -> bool:
    """Development with nothing configured: `fte up` must create a password to log in with."""
    return (
        settings.ENVIRONMENT == "development"
        and not settings.CONSOLE_USERS
        and settings.CONSOLE_DEV_PASSWORD is None
    )


def load_users(settings: Settings) -> dict[str, bytes]:
    users = parse_users(settings.CONSOLE_USERS)
    if settings.ENVIRONMENT != "production" and DEV_USER not in users:
        dev = None
        if settings.CONSOLE_DEV_PASSWORD is not None:
            dev = settings.CONSOLE_DEV_PASSWORD.get_secret_value()
        elif dev_password_file(settings).exists():
            dev = dev_password_file(settings).read_text().strip()
        if dev:
            users[DEV_USER] = bcrypt.hashpw(dev.encode()[:MAX_PASSWORD_BYTES], bcrypt.gensalt(rounds=10))
    return users


def verify(users: dict[str, bytes], username: str, password: str) -> bool:
    raw = password.encode()
    hashed = users.get(username.strip())
    if hashed is None or not raw or len(raw) > MAX_PASSWORD_BYTES:
        bcrypt.checkpw(b"x", _DUMMY_HASH)
        return False
    return bcrypt.checkpw(raw, hashed)
