"""Give this flow pod its share of the Bytewax recovery partitions, once.

Bytewax resumes when the cluster *as a whole* holds every recovery partition; each pod keeps
its own on its volume. Pod `<statefulset>-<ordinal>` of `--replicas` pods takes partitions
ordinal, ordinal + replicas, ... of `--partitions`. A volume that already holds partitions is
left alone: that is the state to resume from.

    python flow-recovery-init.py DIR --partitions 4 --replicas 2 --pod-name support-flow-1
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from bytewax.recovery import init_db_dir


def partitions_for(ordinal: int, replicas: int, partitions: int) -> list[int]:
    return list(range(ordinal, partitions, replicas))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directory", type=Path)
    parser.add_argument("--partitions", type=int, required=True,
                        help="total recovery partitions: the most workers the flow will run")
    parser.add_argument("--replicas", type=int, required=True, help="pods in the StatefulSet")
    parser.add_argument("--pod-name", default=os.environ.get("BYTEWAX_POD_NAME"),
                        help="this pod's name, ending in -<ordinal>")
    args = parser.parse_args(argv)
    if not args.pod_name:
        parser.error("--pod-name (or BYTEWAX_POD_NAME) is required")
    ordinal = int(args.pod_name.rsplit("-", 1)[1])
    if not 0 <= ordinal < args.replicas <= args.partitions:
        parser.error(f"need 0 <= ordinal ({ordinal}) < replicas <= partitions")

    args.directory.mkdir(parents=True, exist_ok=True)
    existing = sorted(p.name for p in args.directory.glob("part-*.sqlite3"))
    if existing:
        print(f"{args.pod_name}: keeping {', '.join(existing)}")
        return 0
    mine = partitions_for(ordinal, args.replicas, args.partitions)
    # Created beside the target, then renamed: a crash here leaves no half-made partition.
    with tempfile.TemporaryDirectory(dir=args.directory, prefix=".init-") as tmp:
        init_db_dir(Path(tmp), args.partitions)
        for index in mine:
            name = f"part-{index}.sqlite3"
            os.replace(Path(tmp) / name, args.directory / name)
    print(f"{args.pod_name}: created partitions {mine} of {args.partitions}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
