"""The console's exporter: started once per Streamlit process, page render times recorded."""

from __future__ import annotations

import threading
from contextlib import contextmanager

from fte import observability
from fte.settings import get_settings

_started = threading.Lock()
_done = False


def start_exporter() -> None:
    global _done
    with _started:
        if _done:
            return
        _done = True
    settings = get_settings()
    if observability.serve("console", settings) is None:
        return

    # Streamlit serves from its own event loop; this beat says the process is up for the
    # uptime history (its liveness probe is Streamlit's /_stcore/health).
    def beat() -> None:
        while True:
            observability.ready()
            threading.Event().wait(10)

    threading.Thread(target=beat, name="console-beat", daemon=True).start()
    observability.record_uptime("console", settings)


@contextmanager
def page_timer(title: str):
    with observability.STAGE_SECONDS.labels("console", f"page:{title}").time():
        yield
