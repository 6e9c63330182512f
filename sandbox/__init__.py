"""Local servers speaking the channel APIs (Gmail, Twilio, OpenAI) for development and tests."""
