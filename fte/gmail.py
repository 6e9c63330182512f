"""The Gmail API client shared by the ingress (reading mail) and the reply sender.

Production: credentials from GMAIL_CREDENTIALS_FILE (a service account with domain-wide
delegation to GMAIL_MAILBOX, or an authorized-user token file) and Google's API.
Development and tests: GMAIL_DISCOVERY_URL points google-api-python-client at a local
server speaking the Gmail REST API (`fte sandbox`), with anonymous credentials.
"""

from __future__ import annotations

import json

import google.auth.credentials
import httplib2
from google_auth_httplib2 import AuthorizedHttp
from google.oauth2 import credentials as user_credentials
from google.oauth2 import service_account
from googleapiclient.discovery import build

from fte.settings import Settings

SCOPES = ["https://www.googleapis.com/auth/gmail.modify"]


def gmail_credentials(settings: Settings) -> google.auth.credentials.Credentials:
    path = settings.GMAIL_CREDENTIALS_FILE
    if path is None:
        if not settings.GMAIL_DISCOVERY_URL:
            raise RuntimeError("set GMAIL_CREDENTIALS_FILE, or GMAIL_DISCOVERY_URL for a local Gmail server")
        return google.auth.credentials.AnonymousCredentials()
    info = json.loads(path.read_text())
    if info.get("type") == "service_account":
        creds = service_account.Credentials.from_service_account_info(info, scopes=SCOPES)
        return creds.with_subject(settings.GMAIL_MAILBOX)
    return user_credentials.Credentials.from_authorized_user_info(info, scopes=SCOPES)


def build_gmail_service(settings: Settings, *, timeout: float | None = 30.0):
    """A `gmail v1` Resource. Not thread-safe (httplib2): one per thread or behind a lock.

    `timeout` bounds every API call (socket timeout); the dispatcher passes its
    DISPATCH_CLIENT_TIMEOUT_S so a send always ends inside its lease.
    """
    http = AuthorizedHttp(gmail_credentials(settings), http=httplib2.Http(timeout=timeout))
    if settings.GMAIL_DISCOVERY_URL:
        return build("gmail", "v1", http=http, cache_discovery=False,
                     static_discovery=False, discoveryServiceUrl=settings.GMAIL_DISCOVERY_URL,
                     num_retries=2)
    return build("gmail", "v1", http=http, cache_discovery=False, num_retries=2)
