"""Customer-supplied text on console pages is shown as text, never as markdown or HTML.

Names, subjects, escalation summaries and dead-letter reasons come from strangers. In a
markdown element (titles, captions, `st.info`) `![x](https://evil/pixel)` would load a
remote image, `[click](javascript:…)` make a link, `:red[...]` restyle the page. Either
show such text with `st.text` / `st.code` / data frames, or pass it through `md()` first.
"""

from __future__ import annotations

import re

# Every ASCII punctuation character may be backslash-escaped in CommonMark; escaping all of
# them also disarms Streamlit's own directives (:red[..], :material/..:, $latex$).
_PUNCT = re.compile(r"([!-/:-@\[-`{-~])")


def md(text: object, max_chars: int = 500) -> str:
    """`text` made inert for a markdown element: one line, every markup character escaped."""
    flat = " ".join(str(text if text is not None else "").split())[:max_chars]
    return _PUNCT.sub(r"\\\1", flat)
