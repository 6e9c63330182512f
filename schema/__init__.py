"""Shared contracts: event models, topic names, SQL migrations and typed queries."""
