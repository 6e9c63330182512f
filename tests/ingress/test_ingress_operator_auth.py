"""Operator endpoints behind authentication: API keys (hashed in settings) and OIDC bearer
tokens verified against a local issuer's JWKS; 401 anonymous, 403 without the role."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

OPERATOR_PATHS = ["/customers/lookup?email=a@example.com", "/conversations/1", "/metrics/channels",
                  "/metrics", "/docs", "/openapi.json", "/health/details"]
AGENT_ONLY = ["/customers/lookup?email=a@example.com", "/conversations/1"]
AUDIENCE = "fte-ingress"


@dataclass
class Issuer:
    url: str
    key: rsa.RSAPrivateKey
    kid: str

    def token(self, *, roles=("agent",), audience: str = AUDIENCE, issuer: str | None = None,
              expires_in: int = 300, key: rsa.RSAPrivateKey | None = None, claim: str = "roles") -> str:
        now = int(time.time())
        claims = {"iss": issuer or self.url, "aud": audience, "sub": f"user-{uuid.uuid4().hex[:6]}",
                  "email": "lead@example.com", "iat": now, "exp": now + expires_in,
                  claim: list(roles)}
        return jwt.encode(claims, key or self.key, algorithm="RS256", headers={"kid": self.kid})


@pytest.fixture(scope="module")
def issuer() -> Iterator[Issuer]:
    """A local OIDC issuer: discovery document and JWKS over HTTP, a fresh RSA key."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    kid = "op-key-1"
    jwk = json.loads(RSAAlgorithm.to_jwk(key.public_key()))
    jwks = json.dumps({"keys": [{**jwk, "kid": kid, "use": "sig", "alg": "RS256"}]}).encode()
    holder: dict[str, str] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path == "/.well-known/openid-configuration":
                body = json.dumps({"issuer": holder["url"], "jwks_uri": holder["url"] + "/jwks"}).encode()
            elif self.path == "/jwks":
                body = jwks
            else:
                self.send_response(404)
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    holder["url"] = f"http://127.0.0.1:{server.server_address[1]}"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield Issuer(holder["url"], key, kid)
    server.shutdown()


@pytest.fixture
def oidc_url(ingress_settings, issuer, server_thread) -> Iterator[str]:
    from ingress.app import create_app

    settings = ingress_settings.model_copy(update={
        "OPERATOR_OIDC_ISSUER": issuer.url, "OPERATOR_OIDC_AUDIENCE": AUDIENCE})
    with server_thread(create_app(settings)) as url:
        yield url


@pytest.mark.parametrize("path", OPERATOR_PATHS)
def test_anonymous_operator_calls_answer_401(client, path):
    response = client.get(path)
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"] == "Bearer"
    assert "@" not in response.text


def test_wrong_api_key_is_401_and_viewer_key_is_403_on_customer_data(client, operator_keys):
    assert client.get("/metrics/channels", headers={"X-API-Key": "fte_op_guess"}).status_code == 401
    viewer = {"Authorization": f"Bearer {operator_keys['viewer']}"}
    assert client.get("/metrics/channels", headers=viewer).status_code == 200
    assert client.get("/openapi.json", headers=viewer).status_code == 200
    for path in AGENT_ONLY:
        assert client.get(path, headers=viewer).status_code == 403
    admin = {"X-API-Key": operator_keys["admin"]}
    assert client.get("/conversations/999999999", headers=admin).status_code == 404


def test_oidc_bearer_with_role_claim_is_admitted(oidc_url, issuer):
    with httpx.Client(base_url=oidc_url, timeout=30) as c:
        agent = {"Authorization": f"Bearer {issuer.token(roles=['agent'])}"}
        assert c.get("/conversations/999999999", headers=agent).status_code == 404  # admitted
        viewer = {"Authorization": f"Bearer {issuer.token(roles=['viewer'])}"}
        assert c.get("/metrics/channels", headers=viewer).status_code == 200
        assert c.get("/customers/lookup", params={"email": "a@example.com"},
                     headers=viewer).status_code == 403
        no_role = {"Authorization": f"Bearer {issuer.token(roles=['intern'])}"}
        assert c.get("/metrics/channels", headers=no_role).status_code == 403


def test_oidc_tokens_that_are_forged_expired_or_for_others_are_401(oidc_url, issuer):
    forger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    bad = [issuer.token(key=forger), issuer.token(expires_in=-120),
           issuer.token(audience="someone-else"), issuer.token(issuer="https://evil.example"),
           issuer.token().rsplit(".", 1)[0] + ".AAAA"]
    with httpx.Client(base_url=oidc_url, timeout=30) as c:
        for token in bad:
            response = c.get("/metrics/channels", headers={"Authorization": f"Bearer {token}"})
            assert response.status_code == 401, token


def test_public_surface_needs_no_credential(client):
    assert client.get("/").status_code == 200
    assert client.get("/health").json() == {"status": "ok"}
    assert client.get("/support/ticket/T-0123456789ABCDEF0123456789ABCDEF").status_code == 404
