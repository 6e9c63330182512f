"""Ingress fixtures: the ingress app and the local Gmail API server under uvicorn on
127.0.0.1:0 (threads), Pub/Sub push tokens signed by a test RSA key whose certs the
verifier fetches from a local server, and a Kafka reader for what was published."""

from __future__ import annotations

import base64
import datetime as dt
import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from confluent_kafka import Consumer, TopicPartition
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from google.auth import crypt, jwt
from testkit import OPERATOR_KEYS, ServerThread

from fte.kafka import ensure_topics
from fte.settings import Settings
from ingress.operator_auth import hash_key
from schema.topics import EMAIL_INBOUND, WEB_INBOUND, WHATSAPP_INBOUND, topic_name

TWILIO_TOKEN = "test-twilio-auth-token"
PUBLIC_BASE_URL = "https://support.example.test"
PUSH_AUDIENCE = "https://support.example.test/webhooks/gmail"
PUSH_SERVICE_ACCOUNT = "gmail-push@fte-test.iam.gserviceaccount.com"
SHARED_TOKEN = "shared-dev-token-for-tests"
# Operator API keys (stored hashed in the settings, like production).


# --- Pub/Sub push tokens ---------------------------------------------------------------
@dataclass
class PushSigner:
    signer: crypt.RSASigner
    certs_url: str
    other_signer: crypt.RSASigner  # a key the verifier does not know

    def token(self, *, audience: str = PUSH_AUDIENCE, email: str = PUSH_SERVICE_ACCOUNT,
              issuer: str = "https://accounts.google.com", expires_in: int = 3600,
              email_verified: bool = True, signer: crypt.RSASigner | None = None) -> str:
        now = int(time.time())
        claims = {"iss": issuer, "aud": audience, "email": email, "email_verified": email_verified,
                  "sub": "112233445566778899", "iat": now - 5, "exp": now + expires_in}
        return jwt.encode(signer or self.signer, claims).decode()


def _rsa_signer(kid: str) -> tuple[crypt.RSASigner, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fte-test")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=1))
            .sign(key, hashes.SHA256()))
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    return (crypt.RSASigner.from_string(pem, key_id=kid),
            cert.public_bytes(serialization.Encoding.PEM).decode())


@pytest.fixture(scope="session")
def push_signer() -> Iterator[PushSigner]:
    signer, cert = _rsa_signer("test-key-1")
    other, _ = _rsa_signer("test-key-1")  # same kid, different key: a forgery
    body = json.dumps({"test-key-1": cert}).encode()

    class Certs(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Certs)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield PushSigner(signer, f"http://127.0.0.1:{server.server_address[1]}/certs", other)
    server.shutdown()


# --- servers -----------------------------------------------------------------------------
@pytest.fixture
def mailbox() -> str:
    return f"support-{uuid.uuid4().hex[:8]}@example.com"


@pytest.fixture
def sandbox_url(stack, mailbox) -> Iterator[str]:
    from sandbox.app import create_app

    with ServerThread(create_app(Settings(GMAIL_MAILBOX=mailbox))) as url:
        yield url


@pytest.fixture
def ingress_settings(stack, topic_prefix, sandbox_url, push_signer, mailbox) -> Settings:
    ensure_topics(stack.kafka_bootstrap, topic_prefix, [EMAIL_INBOUND, WHATSAPP_INBOUND, WEB_INBOUND])
    return stack.model_copy(update={
        "TOPIC_PREFIX": topic_prefix,
        "PUBLIC_BASE_URL": PUBLIC_BASE_URL,
        "FORWARDED_HOSTS": "public.example.org",
        "TWILIO_AUTH_TOKEN": __import__("pydantic").SecretStr(TWILIO_TOKEN),
        "GMAIL_MAILBOX": mailbox,
        "GMAIL_DISCOVERY_URL": f"{sandbox_url}/discovery/gmail/v1/rest",
        "GMAIL_PUSH_AUDIENCE": PUSH_AUDIENCE,
        "GMAIL_PUSH_SERVICE_ACCOUNT": PUSH_SERVICE_ACCOUNT,
        "GMAIL_PUSH_CERTS_URL": push_signer.certs_url,
        "GMAIL_PUSH_VERIFICATION_TOKEN": __import__("pydantic").SecretStr(SHARED_TOKEN),
        "OPERATOR_API_KEYS": __import__("pydantic").SecretStr(",".join(
            f"test-{role}:{role}:{hash_key(key)}" for role, key in OPERATOR_KEYS.items())),
        "RATE_LIMIT_PER_IP": "100000/minute",
        "RATE_LIMIT_PER_IDENTITY": "1000/minute",
    })


@pytest.fixture
def ingress_url(ingress_settings) -> Iterator[str]:
    from ingress.app import create_app

    with ServerThread(create_app(ingress_settings)) as url:
        yield url


@pytest.fixture
def client(ingress_url) -> Iterator[httpx.Client]:
    """Anonymous, as a customer or a stranger calls the ingress."""
    with httpx.Client(base_url=ingress_url, timeout=30) as c:
        yield c


@pytest.fixture
def operator(ingress_url) -> Iterator[httpx.Client]:
    """An operator with the agent role (API key)."""
    with httpx.Client(base_url=ingress_url, timeout=30,
                      headers={"X-API-Key": OPERATOR_KEYS["agent"]}) as c:
        yield c


@pytest.fixture
def operator_keys() -> dict[str, str]:
    return OPERATOR_KEYS


# --- Kafka ---------------------------------------------------------------------------------
def read_topic(bootstrap: str, topic: str, *, expect: int | None = None, idle_s: float = 2.0,
               timeout_s: float = 20.0) -> list[tuple[str, dict]]:
    """Every message on `topic` as (key, decoded JSON); waits for `expect` then `idle_s` more."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"t-{uuid.uuid4().hex}",
                         "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    metadata = consumer.list_topics(topic, timeout=10)
    consumer.assign([TopicPartition(topic, p, 0) for p in metadata.topics[topic].partitions])
    found: list[tuple[str, dict]] = []
    deadline = time.monotonic() + timeout_s
    last = time.monotonic()
    try:
        while time.monotonic() < deadline:
            msg = consumer.poll(0.2)
            if msg is None:
                done = expect is None or len(found) >= expect
                if done and time.monotonic() - last >= idle_s:
                    break
                continue
            if msg.error():
                continue
            found.append((msg.key().decode(), json.loads(msg.value())))
            last = time.monotonic()
    finally:
        consumer.close()
    return found


@pytest.fixture
def inbound(stack, topic_prefix):
    """inbound("whatsapp", expect=1) -> events on that channel's topic for this test."""
    topics = {"email": EMAIL_INBOUND, "whatsapp": WHATSAPP_INBOUND, "web": WEB_INBOUND}

    def read(channel: str, **kwargs) -> list[tuple[str, dict]]:
        return read_topic(stack.kafka_bootstrap, topic_name(topics[channel], topic_prefix), **kwargs)

    return read


def pubsub_push(mailbox: str, history_id: int | str) -> dict:
    data = json.dumps({"emailAddress": mailbox, "historyId": int(history_id)}).encode()
    return {"message": {"data": base64.b64encode(data).decode(), "messageId": uuid.uuid4().hex,
                        "publishTime": "2026-01-01T00:00:00Z"},
            "subscription": "projects/fte-test/subscriptions/gmail-push"}


@pytest.fixture
def push_envelope():
    return pubsub_push


@pytest.fixture
def twilio_token() -> str:
    return TWILIO_TOKEN


@pytest.fixture
def shared_push_token() -> str:
    return SHARED_TOKEN


@pytest.fixture
def server_thread():
    """The ServerThread class, for tests that serve an app with settings of their own."""
    return ServerThread


@pytest.fixture
def topic_reader():
    return read_topic
