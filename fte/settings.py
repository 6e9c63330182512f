"""One Settings object, read from the environment (and an optional `.env`).

Production sets DATABASE_URL and KAFKA_BOOTSTRAP_SERVERS; when either is unset the
embedded stack under FTE_DATA_DIR provides it.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent
DEV_TWILIO_TOKEN = "dev-twilio-auth-token"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", case_sensitive=False)

    # Production unless told otherwise: a forgotten setting must not run with development secrets.
    ENVIRONMENT: Literal["development", "test", "production"] = "production"
    LOG_LEVEL: str = "INFO"
    # Public support data (Bitext, HINT3) for demo traffic, benchmarks and evaluation.
    SHARED_DATA_DIR: Path = REPO_ROOT.parent / "shared" / "data"

    # --- external services (production) -----------------------------------------------
    DATABASE_URL: str | None = None
    KAFKA_BOOTSTRAP_SERVERS: str | None = None

    # --- embedded stack (development, tests, CI) ---------------------------------------
    FTE_DATA_DIR: Path = REPO_ROOT / ".fte"
    FTE_KAFKA_PORT: int = 19092
    FTE_KAFKA_CONTROLLER_PORT: int = 19093
    FTE_KAFKA_HEAP: str = "512m"
    FTE_PG_PORT: int = 15432
    FTE_PG_DATABASE: str = "fte"

    # --- topics ------------------------------------------------------------------------
    # Prefix lets tests and side-by-side deployments use their own topic set.
    TOPIC_PREFIX: str = ""

    # --- ingress -----------------------------------------------------------------------
    INGRESS_HOST: str = "127.0.0.1"
    INGRESS_PORT: int = 8000
    PUBLIC_BASE_URL: str = "http://127.0.0.1:8000"
    # Other public host names a proxy may report in X-Forwarded-Host (comma-separated).
    FORWARDED_HOSTS: str = ""
    MAX_BODY_BYTES: int = 256 * 1024
    RATE_LIMIT_PER_IP: str = "60/minute"
    RATE_LIMIT_PER_IDENTITY: str = "20/minute"
    # Longest wait for Kafka's delivery report before answering 503 (the producer's own
    # message timeout, so a refused message is never delivered later behind our back).
    INGRESS_PUBLISH_TIMEOUT_S: float = 5.0
    INGRESS_DB_POOL_SIZE: int = 10
    # Run the WhatsApp inbox relay and the Gmail watch/poll in this ingress process.
    INGRESS_BACKGROUND: bool = True
    INGRESS_ACCESS_LOG: bool = True  # one redacted line per request, query strings dropped
    # Local server speaking the Gmail (and Twilio, OpenAI) HTTP APIs: `fte sandbox`.
    SANDBOX_PORT: int = 8025
    # Operators (lookups, conversations, metrics, docs, detailed health): API keys stored as
    # "name:role:sha256-hex[,...]" (`python -m ingress.operator_auth new-key NAME ROLE`), or an
    # OIDC bearer token from this issuer, verified against its JWKS, with the role in a claim.
    OPERATOR_API_KEYS: SecretStr | None = None
    OPERATOR_OIDC_ISSUER: str | None = None
    OPERATOR_OIDC_AUDIENCE: str | None = None
    OPERATOR_OIDC_JWKS_URL: str | None = None  # default: the issuer's discovery document
    OPERATOR_OIDC_ROLE_CLAIM: str = "roles"  # dotted path, e.g. realm_access.roles

    # --- Twilio (WhatsApp) -------------------------------------------------------------
    TWILIO_ACCOUNT_SID: str = "AC00000000000000000000000000000000"
    # Only the ingress (signatures) and the dispatcher (sends) read it, through twilio_auth_token().
    TWILIO_AUTH_TOKEN: SecretStr = SecretStr(DEV_TWILIO_TOKEN)
    TWILIO_WHATSAPP_FROM: str = "whatsapp:+14155238886"
    # Base URL of the Twilio REST API; set only to point the SDK at a local server.
    TWILIO_API_BASE: str | None = None
    # Delivery status callbacks (signed) come to PUBLIC_BASE_URL/webhooks/whatsapp/status.
    TWILIO_STATUS_CALLBACKS: bool = True
    # Outside WhatsApp's 24-hour session window only an approved template may be sent:
    # its ContentSid (variable {{1}} = ticket link). Unset: the reply goes to the customer's
    # other verified channel (email), or escalates when there is none.
    TWILIO_TEMPLATE_CONTENT_SID: str | None = None
    WHATSAPP_SESSION_HOURS: float = 24.0
    WHATSAPP_RELAY_POLL_S: float = 1.0  # inbox -> Kafka relay sweep (NOTIFY wakes it sooner)

    # --- Gmail -------------------------------------------------------------------------
    GMAIL_MAILBOX: str = "support@example.com"
    GMAIL_CREDENTIALS_FILE: Path | None = None  # service-account or authorized-user JSON
    GMAIL_DISCOVERY_URL: str | None = None  # local Gmail API server in development/tests
    GMAIL_PUSH_AUDIENCE: str | None = None  # expected `aud` of the Pub/Sub OIDC token
    GMAIL_PUSH_SERVICE_ACCOUNT: str | None = None  # expected `email` claim of that token
    GMAIL_PUSH_CERTS_URL: str | None = None  # override Google's certs (tests only)
    GMAIL_PUSH_VERIFICATION_TOKEN: SecretStr | None = None  # shared token, development only
    # Safety bound of one resync (after an expired history id or a reset mailbox); the
    # resync pages through messages.list back to the last message already processed.
    GMAIL_RESYNC_MAX_MESSAGES: int = 10_000
    GMAIL_INITIAL_SYNC_MESSAGES: int = 50  # no cursor at all (first start): the newest N
    # users.watch: Pub/Sub topic ("projects/P/topics/T"); renewed every GMAIL_WATCH_RENEW_S
    # (Gmail expires a watch after 7 days). Unset: no watch is requested.
    GMAIL_PUBSUB_TOPIC: str | None = None
    GMAIL_WATCH_RENEW_S: float = 24 * 3600.0
    # No push for this long while the mailbox has new history: poll history.list instead.
    GMAIL_FALLBACK_POLL_S: float = 300.0
    GMAIL_SYNC_CHECK_S: float = 30.0  # how often the ingress checks the watch and the mailbox
    # Local channel API server: where it keeps its mailboxes across restarts (development
    # default FTE_DATA_DIR/sandbox; elsewhere only when set).
    SANDBOX_STATE_DIR: Path | None = None

    # --- agent -------------------------------------------------------------------------
    OPENAI_API_KEY: SecretStr | None = None
    OPENAI_BASE_URL: str | None = None
    OPENAI_MODEL: str = "gpt-4o-mini"
    OPENAI_EMBEDDING_MODEL: str = "text-embedding-3-small"
    OPENAI_TIMEOUT_S: float = 20.0
    EMBEDDING_DIM: int = 384
    AGENT_CONCURRENCY: int = 8  # agent requests (OpenAI) or chunks (local) in flight per process
    AGENT_RATE_PER_S: float = 0.0  # provider requests a second (0: no limit)
    AGENT_BATCH_TIMEOUT_S: float = 60.0  # a round's answers later than this escalate instead
    ESCALATION_POLICY_FILE: Path = REPO_ROOT / "flows" / "escalation_policy.yaml"
    CONVERSATION_REOPEN_HOURS: float = 24.0
    EMAIL_FOLD_GMAIL_DOTS: bool = False
    DEFAULT_PHONE_REGION: str = "US"

    # --- flows -------------------------------------------------------------------------
    FLOW_WORKERS: int = 1
    RECOVERY_DIR: Path | None = None  # default: FTE_DATA_DIR / "recovery"
    RECOVERY_SNAPSHOT_S: float = 5.0
    RECOVERY_BACKUP_S: float = 0.0
    FLOW_BATCH_SIZE: int = 500  # support flow: Kafka messages per partition read / handler batch
    FLOW_BATCH_WAIT_MS: float = 50.0  # longest a message waits to be batched with others
    FLOW_STATE_TTL_S: float = 7 * 24 * 3600.0  # per-identifier / per-customer flow state kept this long idle
    # Reply dispatcher: failures in a row that open a channel's circuit, and how long it stays
    # open before one probe; retry backoff for parked replies; lease of a claimed row.
    DISPATCH_BREAKER_FAILURES: int = 5
    DISPATCH_BREAKER_RESET_S: float = 10.0
    DISPATCH_RETRY_BASE_S: float = 1.0
    DISPATCH_RETRY_MAX_S: float = 60.0
    DISPATCH_LEASE_S: float = 30.0
    # Worker threads per channel delivering claimed rows side by side (each with its own
    # database connection and API client); one recipient's replies stay in order.
    DISPATCH_CONCURRENCY: int = Field(default=8, ge=1, le=64)
    # Each channel API call's timeout; the lease is renewed before every part, so one
    # call (and the in-doubt lookup) must fit well inside it (validated below).
    DISPATCH_CLIENT_TIMEOUT_S: float = 10.0

    # --- SLA, business hours, alerts ----------------------------------------------------
    SLA_CONFIG_FILE: Path = REPO_ROOT / "flows" / "sla.yaml"
    # Metrics windows: how long after an event time passes a window's end it still counts
    # as on time (later events are merged into the stored window as late facts).
    METRICS_ALLOWED_LATENESS_S: float = 10.0
    METRICS_DEDUPE_TTL_S: float = 3600.0  # per-message de-duplication memory (wall clock)
    METRICS_BATCH_SIZE: int = 1000  # Kafka messages per partition read

    # --- console -----------------------------------------------------------------------
    CONSOLE_HOST: str | None = None  # default: 0.0.0.0 in production (a pod), else 127.0.0.1
    CONSOLE_PORT: int = 8501
    # "user:role:bcrypt-hash[,...]" (role viewer|agent|admin; "user:hash" is an agent);
    # `fte console hash-password` prints a hash.
    CONSOLE_USERS: str | None = None
    CONSOLE_DEV_PASSWORD: SecretStr | None = None  # development only: user "lead" (admin)
    # Single sign-on: only these are admitted. "ana@example.com:admin,ben@example.com"
    # (role omitted: viewer) and/or groups from the ID token's claim, "support-leads:admin".
    CONSOLE_SSO_ALLOW: str | None = None
    CONSOLE_SSO_GROUPS: str | None = None
    CONSOLE_SSO_GROUP_CLAIM: str = "groups"
    # Failed logins per user name (all sessions and replicas, in Postgres) before a pause.
    CONSOLE_LOGIN_MAX_FAILURES: int = 5
    CONSOLE_LOGIN_LOCKOUT_S: float = 60.0
    # Messages a second `fte up` sends through the ingress in development (0: none).
    DEMO_TRAFFIC_RATE: float = 0.2

    # --- operations: exporters, notifications, tickets, the day's report ---------------
    METRICS_PORT: int | None = None  # this process's exporter port (default: per service)
    HEARTBEAT_MAX_AGE_S: float = 60.0  # /livez fails when the work loop beat longer ago
    NOTIFY_CONFIG_FILE: Path = REPO_ROOT / "flows" / "notify.yaml"
    NOTIFY_EMAIL_TO: str = ""  # comma-separated lead addresses for email notifications
    NOTIFY_SLACK_WEBHOOK_URL: SecretStr | None = None  # Slack-compatible incoming webhook
    REPORT_RECIPIENTS: str = ""  # comma-separated addresses for the day's report
    TICKET_QUIET_HOURS: float = 48.0  # an answered ticket closes after this long quiet

    @model_validator(mode="after")
    def _client_timeout_inside_lease(self) -> Settings:
        if not 0 < self.DISPATCH_CLIENT_TIMEOUT_S * 2 < self.DISPATCH_LEASE_S:
            raise ValueError("DISPATCH_CLIENT_TIMEOUT_S must be positive and under half of "
                             f"DISPATCH_LEASE_S ({self.DISPATCH_LEASE_S} s): a send must finish "
                             "inside its lease or another dispatcher may send it again")
        return self

    @model_validator(mode="after")
    def _refuse_dev_secrets_in_production(self) -> Settings:
        if self.ENVIRONMENT == "production":
            # Unset is fine in pods that never talk to Twilio; the ones that do refuse it
            # when they read it (twilio_auth_token).
            if "TWILIO_AUTH_TOKEN" in self.model_fields_set and \
                    self.TWILIO_AUTH_TOKEN.get_secret_value() == DEV_TWILIO_TOKEN:
                raise ValueError("TWILIO_AUTH_TOKEN: the development token is refused in production")
            if self.GMAIL_PUSH_VERIFICATION_TOKEN is not None:
                raise ValueError("GMAIL_PUSH_VERIFICATION_TOKEN is for development only")
            if self.GMAIL_PUSH_CERTS_URL is not None:
                raise ValueError("GMAIL_PUSH_CERTS_URL is for tests only (production uses Google's)")
            if self.CONSOLE_DEV_PASSWORD is not None:
                raise ValueError("CONSOLE_DEV_PASSWORD is for development only")
            if not (self.DATABASE_URL and self.KAFKA_BOOTSTRAP_SERVERS):
                raise ValueError("DATABASE_URL and KAFKA_BOOTSTRAP_SERVERS must be set in production")
        return self

    # --- derived -----------------------------------------------------------------------
    def twilio_auth_token(self) -> str:
        """The Twilio token for a process that uses it; the development one only outside production."""
        token = self.TWILIO_AUTH_TOKEN.get_secret_value()
        if self.ENVIRONMENT == "production" and token == DEV_TWILIO_TOKEN:
            raise ValueError("TWILIO_AUTH_TOKEN must be set in production")
        return token

    @property
    def embedded_kafka(self) -> bool:
        return not self.KAFKA_BOOTSTRAP_SERVERS

    @property
    def embedded_postgres(self) -> bool:
        return not self.DATABASE_URL

    @property
    def kafka_bootstrap(self) -> str:
        return self.KAFKA_BOOTSTRAP_SERVERS or f"127.0.0.1:{self.FTE_KAFKA_PORT}"

    @property
    def database_url(self) -> str:
        return self.DATABASE_URL or (
            f"postgresql://postgres@127.0.0.1:{self.FTE_PG_PORT}/{self.FTE_PG_DATABASE}"
        )

    @property
    def sandbox_state_dir(self) -> Path | None:
        if self.SANDBOX_STATE_DIR is not None:
            return self.SANDBOX_STATE_DIR
        return self.FTE_DATA_DIR / "sandbox" if self.ENVIRONMENT == "development" else None

    @property
    def recovery_dir(self) -> Path:
        return self.RECOVERY_DIR or (self.FTE_DATA_DIR / "recovery")


@lru_cache
def get_settings() -> Settings:
    return Settings()
