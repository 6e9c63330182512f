"""`fte`: one console script, one module per subcommand under `fte/commands/`."""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from fte.logs import configure_logging
from fte.settings import get_settings

# Each module exposes `register(subparsers)`; it adds its parser and sets `func`.
COMMAND_MODULES = [
    "fte.commands.stack",
    "fte.commands.setup",
    "fte.commands.run",
    "fte.commands.metrics",
    "fte.commands.console",
    "fte.commands.demo",
    "fte.commands.kb",
    "fte.commands.ingress",
    "fte.commands.sandbox",
    "fte.commands.eval",
    "fte.commands.model",
    "fte.commands.flow",
    "fte.commands.dispatch",
    "fte.commands.relay",
    "fte.commands.notify",
    "fte.commands.tickets",
    "fte.commands.report",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fte", description=__doc__)
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


# Commands that run the embedded stack on a developer's machine: development unless told.
# Everything else (the services a pod runs) defaults to production.
DEVELOPMENT_COMMANDS = {"up", "stack", "sandbox"}


def main(argv: list[str] | None = None) -> int:
    args_in = sys.argv[1:] if argv is None else argv
    if args_in and args_in[0] in DEVELOPMENT_COMMANDS:
        os.environ.setdefault("ENVIRONMENT", "development")
    settings = get_settings()
    configure_logging(settings.LOG_LEVEL)
    args = build_parser().parse_args(argv)
    return int(args.func(args, settings) or 0)


if __name__ == "__main__":
    sys.exit(main())
