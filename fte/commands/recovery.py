"""`fte recovery status|reset NAME`: inspect or rebuild a dataflow's recovery store.

`reset` is for a store Bytewax cannot resume from (the flow says so and exits with code 4).
It refuses while the flow runs (the flow holds the store's lock), replaces the store with an
empty one, and says what the next start re-reads: each input partition from the topic's
start. That is safe because every sink is idempotent, and nothing is skipped. It does not
start from `flow_progress`: that is the highest offset a batch committed per partition, and
batches of different customers commit out of offset order, so a lower offset may still be
unhandled.
"""

from __future__ import annotations

import sys

from fte.recovery_store import FLOW_NAMES, StoreInUse, StoreLock, reset_store

READ_PROGRESS = 'SELECT topic, "partition", next_offset FROM flow_progress WHERE flow = %s ORDER BY 1, 2'


def register(subparsers) -> None:
    p = subparsers.add_parser("recovery", help="inspect or rebuild a dataflow's recovery store")
    sub = p.add_subparsers(dest="recovery_command", required=True)
    for command, help_text in (("status", "where the store is, whether a flow holds it"),
                               ("reset", "replace an unresumable store with an empty one")):
        c = sub.add_parser(command, help=help_text)
        c.add_argument("name", choices=sorted(FLOW_NAMES), help="which flow's store")
        c.add_argument("--recovery-dir", default=None, help="the store (default RECOVERY_DIR/NAME)")
        c.set_defaults(func=run)


def run(args, settings) -> int:
    from pathlib import Path

    directory = Path(args.recovery_dir) if args.recovery_dir else settings.recovery_dir / args.name
    if args.recovery_command == "status":
        return _status(args.name, directory)
    try:
        removed = reset_store(directory)
    except StoreInUse as exc:
        print(f"fte: {exc}; stop `{FLOW_NAMES[args.name]}` (or `fte up`) first", file=sys.stderr)
        return 3
    print(f"recovery store {directory}: {removed} partition(s) replaced by an empty store")
    _print_replay(settings, args.name)
    return 0


def _status(name: str, directory) -> int:
    parts = sorted(p.name for p in directory.glob("part-*.sqlite3"))
    try:
        with StoreLock(directory):
            holder = "no flow holds it"
    except StoreInUse as exc:
        holder = str(exc)
    print(f"{name}: {directory}: {len(parts)} partition(s); {holder}")
    return 0


def _print_replay(settings, name: str) -> None:
    """What the next start re-reads: from offset 0 up to the committed progress is already done."""
    import psycopg

    try:
        with psycopg.connect(settings.database_url, connect_timeout=5) as conn:
            rows = conn.execute(READ_PROGRESS, (name,)).fetchall()
    except psycopg.Error as exc:
        print(f"(committed progress unavailable: {exc})")
        return
    print(f"next `{FLOW_NAMES[name]}` start reads every input partition from the topic start; "
          f"sinks skip or merge what was already written")
    for topic, partition, next_offset in rows:
        print(f"  {topic}[{partition}]: committed progress {next_offset}, re-read and de-duplicated")
