"""Who may use the console, and for what: bcrypt-hashed users from the environment, a
development user, single sign-on users from an allow-list; roles viewer < agent < admin.

`CONSOLE_USERS="ana:admin:$2b$12$...,ben:$2b$12$..."` (hashes from `fte console
hash-password`; a user without a role is an agent). Outside production, user `lead`
(admin) may log in with CONSOLE_DEV_PASSWORD, or with the random password `fte up` writes
once to FTE_DATA_DIR/console/dev-password (mode 0600). Single sign-on users are admitted
only when their email is in CONSOLE_SSO_ALLOW or a group of theirs in CONSOLE_SSO_GROUPS.
Pure functions: the Streamlit session handling lives in `console.session`.
"""

from __future__ import annotations

import functools
import os
import secrets
from collections.abc import Iterable, Mapping
from pathlib import Path

import bcrypt

from fte.settings import Settings

DEV_USER = "lead"
MAX_PASSWORD_BYTES = 72  # bcrypt ignores anything longer; refuse rather than truncate silently

ROLES = ("viewer", "agent", "admin")
DEFAULT_ROLE = "agent"
# The least role each action needs; everything else (reading pages) needs a viewer.
NEEDS = {"assign": "agent", "resolve": "agent", "reply": "agent",
         "replay": "admin", "kb_edit": "admin"}


def can(role: str | None, action: str) -> bool:
    if role not in ROLES:
        return False
    return ROLES.index(role) >= ROLES.index(NEEDS.get(action, "viewer"))


@functools.lru_cache(maxsize=8)
def _dummy_hash(cost: int) -> bytes:
    return bcrypt.hashpw(b"not-a-user", bcrypt.gensalt(rounds=cost))


def _cost(hashed: bytes) -> int:
    try:
        return int(hashed.split(b"$")[2])
    except (IndexError, ValueError):
        return 12


def dummy_hash_for(users: Mapping[str, bytes]) -> bytes:
    """Checked against when the user is unknown, at the cost of the dearest real hash, so a
    wrong name takes as long as a wrong password."""
    return _dummy_hash(max((_cost(h) for h in users.values()), default=12))


def hash_password(password: str) -> str:
    raw = password.encode()
    if not raw or len(raw) > MAX_PASSWORD_BYTES:
        raise ValueError(f"password must be 1-{MAX_PASSWORD_BYTES} bytes")
    return bcrypt.hashpw(raw, bcrypt.gensalt(rounds=12)).decode()


def parse_entries(spec: str | None) -> dict[str, tuple[str, bytes]]:
    """`user[:role]:hash[,...]` -> {user: (role, hash)}; malformed entries raise naming the entry."""
    users: dict[str, tuple[str, bytes]] = {}
    for entry in (spec or "").split(","):
        entry = entry.strip()
        if not entry:
            continue
        name, sep, rest = entry.partition(":")
        role, hashed = DEFAULT_ROLE, rest
        if sep and not rest.startswith("$2"):
            role, _, hashed = rest.partition(":")
        if not sep or not name or not hashed.startswith("$2"):
            raise ValueError(f"CONSOLE_USERS entry {name or entry[:8]!r} is not user[:role]:bcrypt-hash")
        if role not in ROLES:
            raise ValueError(f"CONSOLE_USERS entry {name!r}: role must be one of {', '.join(ROLES)}")
        users[name.strip()] = (role, hashed.strip().encode())
    return users


def parse_users(spec: str | None) -> dict[str, bytes]:
    return {name: hashed for name, (_role, hashed) in parse_entries(spec).items()}


def roles(settings: Settings) -> dict[str, str]:
    """Role of each password user (the development user is an admin)."""
    found = {name: role for name, (role, _h) in parse_entries(settings.CONSOLE_USERS).items()}
    if settings.ENVIRONMENT != "production":
        found.setdefault(DEV_USER, "admin")
    return found


def _role_map(spec: str | None, default: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for entry in (spec or "").split(","):
        entry = entry.strip()
        if not entry:
            continue
        key, sep, role = entry.rpartition(":")
        if not sep or role not in ROLES:  # "ana@example.com" without a role
            key, role = entry, default
        out[key.strip().lower()] = role
    return out


def sso_role(claims: Mapping, settings: Settings) -> str | None:
    """The role of a single sign-on user, or None when not on the allow-list (refused).
    The highest role from the email entry and any mapped group claim wins."""
    found: list[str] = []
    email = str(claims.get("email") or "").strip().lower()
    if email and claims.get("email_verified", True) is not False:
        allowed = _role_map(settings.CONSOLE_SSO_ALLOW, "viewer")
        if email in allowed:
            found.append(allowed[email])
    groups = claims.get(settings.CONSOLE_SSO_GROUP_CLAIM) or []
    if isinstance(groups, str):
        groups = [groups]
    by_group = _role_map(settings.CONSOLE_SSO_GROUPS, "viewer")
    found += [by_group[g.lower()] for g in groups if isinstance(g, str) and g.lower() in by_group]
    return max(found, key=ROLES.index) if found else None


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
            users[DEV_USER] = bcrypt.hashpw(dev.encode()[:MAX_PASSWORD_BYTES], bcrypt.gensalt(rounds=12))
    return users


def verify(users: dict[str, bytes], username: str, password: str) -> bool:
    raw = password.encode()
    hashed = users.get(username.strip())
    if hashed is None or not raw or len(raw) > MAX_PASSWORD_BYTES:
        bcrypt.checkpw(b"x", dummy_hash_for(users))
        return False
    return bcrypt.checkpw(raw, hashed)


def throttle_key(username: str) -> str:
    """Failures are counted per user name as typed (trimmed, case-folded), known or not."""
    return username.strip().lower()[:200]


def locked(failure_times: Iterable, *, now, max_failures: int, lockout_s: float) -> bool:
    """Pure: too many failures within the lockout window."""
    return sum(1 for t in failure_times if (now - t).total_seconds() < lockout_s) >= max_failures
