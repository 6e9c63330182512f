"""`fte console`: the support console (Streamlit), and its password helpers.

  fte console                 serve console/app.py on CONSOLE_HOST:CONSOLE_PORT (headless)
  fte console hash-password   print a bcrypt hash for CONSOLE_USERS
  fte console dev-password    development: create the `lead` password once and print it
"""

from __future__ import annotations

import getpass
import os
import sys

from console import auth
from fte.settings import REPO_ROOT

APP = REPO_ROOT / "console" / "app.py"


def register(subparsers) -> None:
    p = subparsers.add_parser("console", help="run the support console (Streamlit)")
    p.add_argument("action", nargs="?", default="serve", choices=["serve", "hash-password", "dev-password"])
    p.add_argument("--port", type=int, help="default CONSOLE_PORT")
    p.set_defaults(func=run)


def run(args, settings) -> int:
    if args.action == "hash-password":
        return hash_password()
    if args.action == "dev-password":
        return dev_password(settings)
    return serve(settings, args.port or settings.CONSOLE_PORT)


def hash_password() -> int:
    if sys.stdin.isatty():
        password = getpass.getpass("password: ")
        if getpass.getpass("again: ") != password:
            print("passwords differ", file=sys.stderr)
            return 2
    else:
        password = sys.stdin.readline().rstrip("\n")
    try:
        print(auth.hash_password(password))
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 2
    return 0


def dev_password(settings) -> int:
    """Print the development password the first time only (it stays in a 0600 file)."""
    if not auth.needs_dev_password(settings):
        return 0
    password, created = auth.ensure_dev_password(settings)
    path = auth.dev_password_file(settings)
    if created:
        print(f"console login: user '{auth.DEV_USER}', password {password}  (kept in {path})")
    else:
        print(f"console login: user '{auth.DEV_USER}', password in {path}")
    return 0


def streamlit_argv(port: int, host: str) -> list[str]:
    return [
        sys.executable, "-m", "console.serve", "run", str(APP),  # streamlit, exporter first
        "--server.headless", "true",
        "--server.port", str(port),
        "--server.address", host,
        "--browser.gatherUsageStats", "false",
        "--server.fileWatcherType", "none",
        "--client.toolbarMode", "viewer",
        "--theme.primaryColor", "#4C78A8",
    ]


def serve(settings, port: int) -> int:
    if auth.needs_dev_password(settings):
        dev_password(settings)
    host = settings.CONSOLE_HOST or ("0.0.0.0" if settings.ENVIRONMENT == "production" else "127.0.0.1")
    argv = streamlit_argv(port, host)
    os.chdir(REPO_ROOT)  # .streamlit/secrets.toml (OIDC) is read from here
    os.execv(argv[0], argv)  # Streamlit owns the process: signals reach it directly
