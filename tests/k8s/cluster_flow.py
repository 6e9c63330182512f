"""A small stateful dataflow for running a real multi-process Bytewax cluster in tests.

Every number read is written once, with a running count per key, to
`$FLOW_OUT/<pod>-<worker>.txt`; recovery (and resizing the cluster) must not lose or repeat
any of them, and the per-key counts must carry on across restarts. The input is
TestingSource(range(ITEMS)), or the file `$FLOW_IN` (one number a line) when set: a file
source resumes at its byte offset, so lines appended between runs are read by the next run.
"""

from __future__ import annotations

import os
from pathlib import Path

import bytewax.operators as op
from bytewax.connectors.files import FileSource
from bytewax.dataflow import Dataflow
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from bytewax.testing import TestingSource

ITEMS = 240
KEYS = 16


class _FilePartition(StatelessSinkPartition):
    def __init__(self, path: Path):
        self._path = path

    def write_batch(self, items):
        with self._path.open("a") as f:
            f.writelines(f"{item}\n" for item in items)


class FileSink(DynamicSink):
    def build(self, step_id, worker_index, worker_count):
        out = Path(os.environ["FLOW_OUT"])
        return _FilePartition(out / f"{os.environ['BYTEWAX_POD_NAME']}-{worker_index}.txt")


def _count(seen, x):
    seen = (seen or 0) + 1
    return seen, f"{x} {seen}"


flow = Dataflow("k8s_cluster_check")
source = FileSource(Path(os.environ["FLOW_IN"])) if os.environ.get("FLOW_IN") else TestingSource(range(ITEMS))
numbers = op.map("parse", op.input("numbers", flow, source), int)
keyed = op.key_on("key", numbers, lambda x: str(x % KEYS))
counted = op.stateful_map("count", keyed, _count)
op.output("out", op.map("value", counted, lambda kv: kv[1]), FileSink())
