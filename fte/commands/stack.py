"""`fte stack up|down|status`: the embedded Kafka and Postgres."""

from __future__ import annotations

import time

from fte import stack


def register(subparsers) -> None:
    parser = subparsers.add_parser("stack", help="start, stop or inspect the local Kafka and Postgres")
    parser.add_argument("action", choices=["up", "down", "status"])
    parser.set_defaults(func=run)


def print_status(statuses: list[stack.ServiceStatus]) -> None:
    for s in statuses:
        where = "embedded" if s.embedded else "external"
        state = "up" if s.up else "down"
        extra = f"  ({s.detail})" if s.detail else ""
        print(f"{s.name:<9} {state:<5} {s.address:<28} {where}{extra}")


def run(args, settings) -> int:
    started = time.monotonic()
    if args.action == "up":
        statuses = stack.up(settings)
        print_status(statuses)
        print(f"ready in {time.monotonic() - started:.1f}s")
    elif args.action == "down":
        print_status(stack.down(settings))
    else:
        statuses = stack.status(settings)
        print_status(statuses)
        return 0 if all(s.up for s in statuses) else 3
    return 0
