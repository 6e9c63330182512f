"""Fixtures for the sink tests: `migrated_db` (a migrated database of their own) and
`channel_api_server` (the sandbox Gmail + Twilio APIs on an ephemeral port) come from
tests/conftest.py, shared with tests/ops."""
