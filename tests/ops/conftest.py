"""Fixtures for the operations tests: a Slack-compatible webhook stand-in and `fte` services
run as real processes (`migrated_db` and `channel_api_server` come from tests/conftest.py)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import httpx
import pytest
from fastapi import FastAPI, Request
from testkit import ServerThread, free_port, wait_for


class SlackStandIn:
    """Records what an incoming webhook receives (Slack answers `ok` with 200)."""

    def __init__(self):
        self.posts: list[dict] = []
        self.lock = threading.Lock()
        self.fail_next = 0
        app = FastAPI()

        @app.post("/services/T000/B000/XXXX")
        async def hook(request: Request):
            from fastapi.responses import PlainTextResponse

            if self.fail_next:
                self.fail_next -= 1
                return PlainTextResponse("service_unavailable", status_code=503)
            body = await request.json()
            with self.lock:
                self.posts.append(body)
            return PlainTextResponse("ok")

        self.app = app


@pytest.fixture
def slack():
    stand_in = SlackStandIn()
    with ServerThread(stand_in.app, lifespan="off") as url:
        stand_in.url = f"{url}/services/T000/B000/XXXX"
        yield stand_in


class Service:
    """`python -m fte.cli <argv>` with its own exporter port, stopped at the end."""

    def __init__(self, argv: list[str], env: dict[str, str]):
        self.port = free_port()
        self.proc = subprocess.Popen([sys.executable, "-m", "fte.cli", *argv],
                                     env={**os.environ, **env, "METRICS_PORT": str(self.port)},
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.base = f"http://127.0.0.1:{self.port}"

    def get(self, path: str) -> httpx.Response | None:
        try:
            return httpx.get(f"{self.base}{path}", timeout=5)
        except httpx.HTTPError:
            return None

    def wait_ready(self, timeout: float = 120.0) -> None:
        def ready():
            assert self.proc.poll() is None, self.proc.stderr.read()[-3000:]
            r = self.get("/readyz")
            return r is not None and r.status_code == 200
        wait_for(ready, timeout, "service ready")

    def metric(self, name: str, **labels) -> float:
        """The sum of `name` samples whose labels include `labels` (0 when absent)."""
        from prometheus_client.parser import text_string_to_metric_families

        total = 0.0
        r = self.get("/metrics")
        assert r is not None and r.status_code == 200
        for family in text_string_to_metric_families(r.text):
            for sample in family.samples:
                if sample.name == name and labels.items() <= sample.labels.items():
                    total += sample.value
        return total

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()


@pytest.fixture
def services():
    started: list[Service] = []

    def start(argv: list[str], env: dict[str, str]) -> Service:
        service = Service(argv, env)
        started.append(service)
        return service

    yield start
    for service in started:
        service.stop()
