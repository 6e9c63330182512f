"""Running the console under Streamlit's AppTest: logged in, on a chosen page."""

from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

REPO = Path(__file__).resolve().parents[2]
APP = str(REPO / "console" / "app.py")
DEV_PASSWORD = "correct horse battery staple"

PAGES = {
    "overview": "pages/overview/overview.py",
    "sla": "pages/sla/sla.py",
    "escalations": "pages/escalations/escalations.py",
    "customers": "pages/customers/customers.py",
    "knowledge": "pages/knowledge/knowledge.py",
    "dead_letters": "pages/dead_letters/dead_letters.py",
    "system": "pages/system/system.py",
}


def open_page(page: str, user: str = "lead", role: str = "admin") -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    at.session_state["console_user"] = user
    at.session_state["console_role"] = role
    at.run()
    if page != "overview":
        at.switch_page(PAGES[page])
        at.run()
    assert not at.exception, at.exception
    return at


def texts(at: AppTest) -> str:
    """Everything readable on the page, for `in` checks."""
    parts = []
    for kind in ("title", "subheader", "markdown", "caption", "info", "success", "warning", "error", "text", "code"):
        parts += [str(e.value) for e in getattr(at, kind)]
    parts += [f"{m.label} {m.value} {m.delta or ''}" for m in at.metric]
    return "\n".join(parts)


def frames(at: AppTest):
    return [d.value for d in at.dataframe]


def frame_with(at: AppTest, column: str):
    """The first data frame on the page that has `column`."""
    return next(d.value for d in at.dataframe if column in d.value.columns)
