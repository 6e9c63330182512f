"""A dataflow whose one step blocks while the file `$HANG_FILE` exists, instrumented like the
real flows (fte.flow_health.instrument_flow): the liveness endpoint must notice the hang.

    python tests/ops/hang_flow.py     (METRICS_PORT, HEARTBEAT_MAX_AGE_S, HANG_FILE from env)
"""

from __future__ import annotations

import os
import time
from datetime import timedelta
from pathlib import Path

import bytewax.operators as op
from bytewax._bytewax import cli_main
from bytewax.dataflow import Dataflow
from bytewax.inputs import SimplePollingSource

from fte.flow_health import instrument_flow
from fte.settings import get_settings


class Ticks(SimplePollingSource):
    def __init__(self):
        super().__init__(interval=timedelta(milliseconds=200))

    def next_item(self):
        return time.time()


def work(tick: float) -> float:
    while Path(os.environ["HANG_FILE"]).exists():  # a step that never returns (a hung call)
        time.sleep(0.05)
    return tick


flow = Dataflow("hang_check")
op.inspect("sink", op.map("work", op.input("ticks", flow, Ticks()), work), lambda *_: None)

if __name__ == "__main__":
    instrument_flow(flow, "support-flow", get_settings())
    cli_main(flow, workers_per_process=1)
