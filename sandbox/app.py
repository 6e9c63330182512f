"""`create_app()`: one local server for every channel API the system calls.

Mounts the Gmail API (gmail.py) and, where present, the Twilio (twilio.py) and OpenAI
(openai.py) routers; `fte sandbox` serves it on SANDBOX_PORT. Loopback use only.
"""

from __future__ import annotations

import importlib
import importlib.util

from fastapi import FastAPI

from fte.settings import Settings
from sandbox import gmail

# Other channel API modules, each exposing `router` (and optionally `install(app, settings)`).
OPTIONAL_MODULES = ("sandbox.twilio", "sandbox.openai")


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    app = FastAPI(title="fte sandbox: local channel APIs", version="1.0")
    gmail.install(app, settings.GMAIL_MAILBOX, settings.sandbox_state_dir)
    for name in OPTIONAL_MODULES:
        if importlib.util.find_spec(name) is None:
            continue
        module = importlib.import_module(name)
        if hasattr(module, "install"):
            module.install(app, settings)
        else:
            app.include_router(module.router)

    @app.get("/_sandbox/health", tags=["sandbox"])
    def health() -> dict:
        return {"ok": True, "apis": ["gmail", *[n.rsplit(".", 1)[1] for n in OPTIONAL_MODULES
                                              if importlib.util.find_spec(n) is not None]]}

    return app
