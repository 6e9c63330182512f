"""Command-line entry point, settings, logging and the embedded local stack."""
