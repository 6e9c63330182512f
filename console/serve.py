"""`python -m console.serve run app.py ...`: Streamlit's own command line, with the console's
exporter started first (Streamlit runs app.py only when a browser connects; the exporter and
the uptime history should not wait for that)."""

from __future__ import annotations

import sys

from console.telemetry import start_exporter

if __name__ == "__main__":
    start_exporter()
    from streamlit.web.cli import main

    sys.argv = ["streamlit", *sys.argv[1:]]
    sys.exit(main())
