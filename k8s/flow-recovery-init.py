"""Give this flow pod its share of the Bytewax recovery partitions, once.

Bytewax resumes when the cluster *as a whole* holds every recovery partition; each pod keeps
its own on its volume. Pod `<statefulset>-<ordinal>` of `--replicas` pods takes partitions
ordinal, ordinal + replicas, ... of `--partitions`. A volume that already holds partitions is
left alone: that is the state to resume from.

    python flow-recovery-init.py DIR --partitions 4 --replicas 2 --pod-name support-flow-1

Resizing the cluster (docs/runbook.md, "Resize a flow"): with the flow stopped and every
pod's recovery volume mounted in one place, `--rebalance` moves the partition files so that
volume i of the new `--replicas` holds partitions i, i + replicas, ...:

    python flow-recovery-init.py --rebalance --replicas 1 /vol/support-flow-0 /vol/support-flow-1
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


def _files_of(directory: Path, index: int) -> list[Path]:
    # The partition and any SQLite side files (-wal, -shm, -journal) travel together.
    return sorted(directory.glob(f"part-{index}.sqlite3*"))


def rebalance(directories: list[Path], replicas: int) -> dict[Path, list[int]]:
    """Move partition files so directories[i] holds partitions i, i + replicas, ... .

    Every partition must be present exactly once across the directories (refuses otherwise,
    before moving anything); directories beyond `replicas` end up empty.
    """
    if not 0 < replicas <= len(directories):
        raise ValueError(f"need 0 < replicas ({replicas}) <= volumes ({len(directories)})")
    where: dict[int, Path] = {}
    for directory in directories:
        for path in directory.glob("part-*.sqlite3"):
            index = int(path.name.split("-")[1].split(".")[0])
            if index in where:
                raise ValueError(f"partition {index} is in both {where[index]} and {directory}")
            where[index] = directory
    total = len(where)
    if sorted(where) != list(range(total)):
        raise ValueError(f"partitions missing: {sorted(set(range(max(where, default=-1) + 1)) - set(where))}")
    if replicas > total:
        raise ValueError(f"{replicas} processes need at least as many partitions (have {total})")
    for index, source in sorted(where.items()):
        target = directories[index % replicas]
        if target != source:
            target.mkdir(parents=True, exist_ok=True)
            for path in _files_of(source, index):
                os.replace(path, target / path.name) if path.stat().st_dev == target.stat().st_dev \
                    else _copy_then_remove(path, target / path.name)
    return {d: sorted(int(p.name.split("-")[1].split(".")[0]) for p in d.glob("part-*.sqlite3"))
            for d in directories}


def _copy_then_remove(source: Path, target: Path) -> None:
    import shutil

    tmp = target.with_name(f".{target.name}.tmp")
    shutil.copy2(source, tmp)
    os.replace(tmp, target)
    source.unlink()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    if argv is None:
        argv = sys.argv[1:]
    if "--rebalance" in argv:
        parser.add_argument("--rebalance", action="store_true")
        parser.add_argument("--replicas", type=int, required=True, help="pods after the resize")
        parser.add_argument("directories", type=Path, nargs="+", help="every pod's recovery directory, in ordinal order")
        args = parser.parse_args(argv)
        try:
            held = rebalance(args.directories, args.replicas)
        except ValueError as exc:
            parser.error(str(exc))
        for directory, parts in held.items():
            print(f"{directory}: partitions {parts}")
        return 0
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
