"""Who may call the operator endpoints: API keys (stored hashed) or OIDC bearer tokens.

Roles are ordered: `viewer` (metrics, docs, detailed health) < `agent` (customer lookups and
conversations) < `admin`. No credential answers 401, a credential without the role 403.

API keys are random (`fte_op_` + 32 random bytes), so a SHA-256 of the key is enough to
store them (no password stretching needed); comparison is constant-time. OIDC tokens are
JWTs signed by the configured issuer, checked against its JWKS (cached), its audience and
expiry; the role comes from a claim (a string or a list; a dotted path reaches nested claims).

    python -m ingress.operator_auth new-key NAME ROLE   # prints the key once, and its setting
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import httpx
import jwt
from fastapi import Depends, HTTPException, Request
from fastapi.concurrency import run_in_threadpool

from fte.logs import get_logger
from fte.settings import Settings

log = get_logger(__name__)

ROLES = ("viewer", "agent", "admin")
KEY_PREFIX = "fte_op_"
DEV_KEY_FILE = "operator-dev-key"  # under FTE_DATA_DIR, development only (0600)
JWT_ALGORITHMS = ["RS256", "RS384", "RS512", "ES256", "ES384", "PS256"]


@dataclass(frozen=True)
class Operator:
    name: str
    role: str
    via: str  # "api-key" | "oidc"

    def has(self, role: str) -> bool:
        return ROLES.index(self.role) >= ROLES.index(role)


class AuthError(Exception):
    """401: no usable credential."""


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def parse_keys(spec: str | None) -> list[tuple[str, str, str]]:
    """"name:role:sha256[,...]" -> [(name, role, digest)]; ValueError names the bad entry."""
    out = []
    for entry in (spec or "").split(","):
        entry = entry.strip()
        if not entry:
            continue
        parts = entry.split(":")
        if len(parts) != 3 or parts[1] not in ROLES or len(parts[2]) != 64:
            raise ValueError(f"OPERATOR_API_KEYS: entry {parts[0]!r} is not name:role:sha256-hex "
                             f"with a role in {ROLES}")
        out.append((parts[0], parts[1], parts[2].lower()))
    return out


def dev_key_file(settings: Settings) -> Path:
    return settings.FTE_DATA_DIR / DEV_KEY_FILE


def ensure_dev_key(settings: Settings) -> str:
    """Development only: an admin key in FTE_DATA_DIR (created 0600 when missing)."""
    path = dev_key_file(settings)
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    key = new_key()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process created it first
        return path.read_text().strip()
    with os.fdopen(fd, "w") as handle:
        handle.write(key + "\n")
    return key


class OperatorAuth:
    """Built once per app from settings; `authenticate` is called per operator request."""

    def __init__(self, settings: Settings):
        spec = settings.OPERATOR_API_KEYS.get_secret_value() if settings.OPERATOR_API_KEYS else None
        self.keys = parse_keys(spec)
        if not self.keys and settings.ENVIRONMENT == "development":
            self.keys = [("dev", "admin", hash_key(ensure_dev_key(settings)))]
            log.info("operator_auth.dev_key", file=str(dev_key_file(settings)))
        self.issuer = settings.OPERATOR_OIDC_ISSUER
        self.audience = settings.OPERATOR_OIDC_AUDIENCE
        self.role_claim = settings.OPERATOR_OIDC_ROLE_CLAIM
        self._jwks_url = settings.OPERATOR_OIDC_JWKS_URL
        self._jwks: jwt.PyJWKClient | None = None
        if self.issuer and not self.audience:
            raise ValueError("OPERATOR_OIDC_AUDIENCE is required with OPERATOR_OIDC_ISSUER")

    # --- API keys ------------------------------------------------------------------------
    def _by_key(self, key: str) -> Operator | None:
        digest = hash_key(key)
        found = None
        for name, role, stored in self.keys:  # every entry compared: no early exit on a match
            if hmac.compare_digest(digest, stored):
                found = Operator(name, role, "api-key")
        return found

    # --- OIDC ----------------------------------------------------------------------------
    def _jwks_client(self) -> jwt.PyJWKClient:
        if self._jwks is None:
            url = self._jwks_url
            if not url:
                discovery = httpx.get(self.issuer.rstrip("/") + "/.well-known/openid-configuration",
                                      timeout=5)
                discovery.raise_for_status()
                url = discovery.json()["jwks_uri"]
            # Keys cached for 5 minutes; an unknown kid triggers one refetch (key rotation).
            self._jwks = jwt.PyJWKClient(url, cache_keys=True, lifespan=300, timeout=5)
        return self._jwks

    def _by_token(self, token: str) -> Operator:
        """Blocking (may fetch the JWKS): call from a thread."""
        if not self.issuer:
            raise AuthError("bearer tokens are not accepted here")
        try:
            key = self._jwks_client().get_signing_key_from_jwt(token)
            claims = jwt.decode(token, key.key, algorithms=JWT_ALGORITHMS, audience=self.audience,
                                issuer=self.issuer, leeway=10,
                                options={"require": ["exp", "iss", "aud", "sub"]})
        except (jwt.PyJWTError, httpx.HTTPError, KeyError, ValueError) as exc:
            raise AuthError(f"invalid token: {type(exc).__name__}") from exc
        value: object = claims
        for part in self.role_claim.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        granted = [value] if isinstance(value, str) else list(value or []) if isinstance(value, list) else []
        roles = [r for r in ROLES if r in granted]
        name = str(claims.get("email") or claims["sub"])
        # No known role: authenticated but not entitled (403 at the route).
        return Operator(name, roles[-1] if roles else "", "oidc")

    async def authenticate(self, request: Request) -> Operator:
        authorization = request.headers.get("authorization", "")
        api_key = request.headers.get("x-api-key")
        if not api_key and authorization[:7].lower() == "bearer ":
            credential = authorization[7:].strip()
            if credential.count(".") == 2:
                return await run_in_threadpool(self._by_token, credential)
            api_key = credential
        if not api_key:
            raise AuthError("no credential")
        operator = self._by_key(api_key.strip())
        if operator is None:
            raise AuthError("unknown API key")
        return operator


def _auth(request: Request) -> OperatorAuth:
    return request.app.state.operator_auth


def require(role: str):
    """Dependency: the operator, if authenticated with at least `role`."""

    async def check(request: Request, auth: Annotated[OperatorAuth, Depends(_auth)]) -> Operator:
        try:
            operator = await auth.authenticate(request)
        except AuthError as exc:
            log.info("operator_auth.refused", path=request.url.path, reason=str(exc),
                     client=request.client.host if request.client else None)
            raise HTTPException(401, "operator credential required",
                                headers={"WWW-Authenticate": "Bearer"}) from exc
        if not operator.role or not operator.has(role):
            log.info("operator_auth.forbidden", path=request.url.path, operator=operator.name,
                     role=operator.role or None, needed=role)
            raise HTTPException(403, f"role {role!r} required")
        request.state.operator = operator
        return operator

    return check


Viewer = Depends(require("viewer"))
Agent = Depends(require("agent"))


def main(argv: list[str]) -> int:
    if len(argv) != 3 or argv[0] != "new-key" or argv[2] not in ROLES:
        print(f"usage: python -m ingress.operator_auth new-key NAME {{{'|'.join(ROLES)}}}",
              file=sys.stderr)
        return 2
    key = new_key()
    print(f"key (give to the operator, shown once): {key}")
    print(f"OPERATOR_API_KEYS entry: {argv[1]}:{argv[2]}:{hash_key(key)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
