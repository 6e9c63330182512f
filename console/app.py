"""Entry file: navigation only. Until someone logs in, the login page is the only page."""

import streamlit as st

from console.session import current_user, login_form
from console.telemetry import page_timer, start_exporter

st.set_page_config(page_title="fte console", page_icon=":material/support_agent:", layout="wide")
start_exporter()  # once per process: /metrics on the console's own port

if current_user():
    page = st.navigation({
        "Live": [
            st.Page("pages/overview/overview.py", title="Overview", icon=":material/monitoring:", default=True),
            st.Page("pages/sla/sla.py", title="SLA", icon=":material/timer:"),
            st.Page("pages/report/report.py", title="Report", icon=":material/summarize:"),
        ],
        "Work": [
            st.Page("pages/escalations/escalations.py", title="Escalations", icon=":material/support_agent:"),
            st.Page("pages/customers/customers.py", title="Customers", icon=":material/group:"),
            st.Page("pages/knowledge/knowledge.py", title="Knowledge base", icon=":material/menu_book:"),
        ],
        "Operations": [
            st.Page("pages/dead_letters/dead_letters.py", title="Dead letters", icon=":material/report:"),
            st.Page("pages/system/system.py", title="System", icon=":material/dns:"),
            st.Page("pages/account/sign_out.py", title="Sign out", icon=":material/logout:"),
        ],
    })
    with page_timer(page.title):
        page.run()
else:
    st.navigation([st.Page(login_form, title="Log in", icon=":material/login:")]).run()
