"""The support console: a Streamlit app for support leads (`fte console`)."""
