"""The System page shows a crash loop raised by `fte up`'s supervisor."""

from __future__ import annotations

from datetime import UTC, datetime

from console_apptest import open_page

from fte.settings import get_settings
from fte.supervisor import RestartPolicy, Service, crash_loop_alert, raise_alert


def test_system_page_shows_a_crash_looping_service_with_its_hint(console_env):
    service = Service("metrics-flow", ["metrics-flow"], last_code=4)
    raise_alert(get_settings(), crash_loop_alert(service, 3, RestartPolicy(), datetime.now(UTC)))
    at = open_page("system")
    assert any("Crash loop: metrics-flow" in e.value for e in at.error)
    loops = next(d.value for d in at.dataframe if "restarts_in_window" in d.value.columns)
    assert loops["service"].tolist() == ["metrics-flow"] and loops["exit_code"].tolist() == [4]
    assert "fte recovery reset metrics" in loops["hint"].iloc[0]
