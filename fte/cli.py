"""`fte`: one console script, one module per subcommand under `fte/commands/`."""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys

from pydantic import ValidationError

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
    "fte.commands.recovery",
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
    # Arguments first, so `--help` and usage errors never depend on the environment.
    args = build_parser().parse_args(args_in)
    try:
        settings = get_settings()
    except ValidationError as exc:
        problems = "; ".join(error["msg"].removeprefix("Value error, ") for error in exc.errors())
        print(f"fte: invalid settings: {problems}", file=sys.stderr)
        return 2
    configure_logging(settings.LOG_LEVEL)
    # SIGTERM (the supervisor, Kubernetes) stops a command like Ctrl-C; a stop asked for is
    # not an error and prints no traceback. Servers that install their own handlers keep them.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    from fte.recovery_store import interrupted

    try:
        return int(args.func(args, settings) or 0)
    except KeyboardInterrupt:
        return 0
    except Exception as exc:
        if interrupted(exc):  # a library wrapped the interrupt (e.g. a sink's database call)
            return 0
        raise


if __name__ == "__main__":
    sys.exit(main())
