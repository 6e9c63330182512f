"""Sign out: forget this session's user and return to the login page."""

import streamlit as st

from console.session import sign_out

sign_out()
st.rerun()
