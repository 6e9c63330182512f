"""`fte flow --processes 2`: the real support flow as a two-process Bytewax cluster on loopback;
kill -9 of one process mid-stream, the supervisor restarts the cluster from its recovery
partitions, and every message is handled and answered exactly once."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from support_harness import *
from support_harness import FlowProcess, dispatcher, publish, query, sandbox_get, wait_for
from test_support_recovery import make_messages

pytestmark = pytest.mark.timeout(600)


def children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        out += [int(p) for p in text]
    return out


def count(env, sql, params=()) -> int:
    return query(env["DATABASE_URL"], sql, params)[0]["n"]


def test_two_process_cluster_survives_kill_9_of_one_process(flow_env, channel_apis, tmp_path):
    env = {**flow_env, "FLOW_BATCH_SIZE": "50", "RECOVERY_SNAPSHOT_S": "1", "FLOW_WORKERS": "1",
           "RECOVERY_DIR": str(tmp_path / "recovery")}
    messages = make_messages(400, 80, seed=11)
    keys = [m.inbound_key for m in messages]
    handled_sql = ("SELECT count(*) AS n FROM messages WHERE direction='inbound' AND handled_at IS NOT NULL "
                   "AND channel || ':' || channel_message_id = ANY(%s)")
    sender = dispatcher(env).start()
    flow = FlowProcess(env, argv=("flow", "--processes", "2"), log=tmp_path / "flow.log").start()
    try:
        procs = wait_for(lambda: len(children(flow.proc.pid)) == 2 and children(flow.proc.pid), 60,
                         message="two flow processes")
        publish(env, messages)
        wait_for(lambda: count(env, handled_sql, (keys,)) >= 60, 240, message="60 handled")
        os.kill(procs[1], signal.SIGKILL)
        at_kill = count(env, handled_sql, (keys,))
        assert at_kill < 400, "the crash should come mid-stream"
        wait_for(lambda: set(children(flow.proc.pid)) - set(procs), 60, message="cluster restarted")
        wait_for(lambda: count(env, handled_sql, (keys,)) == 400, 400, message="all 400 handled")
        wait_for(lambda: count(env, "SELECT count(*) AS n FROM reply_outbox WHERE status <> 'sent' "
                               "AND inbound_key = ANY(%s)", (keys,)) == 0, 120, message="all sent")
    finally:
        flow.stop()
        sender.stop()
    db = env["DATABASE_URL"]
    replies = query(db, "SELECT * FROM reply_outbox WHERE inbound_key = ANY(%s)", (keys,))
    attached_silently = count(env, "SELECT count(*) AS n FROM messages m WHERE handled_as='attached' "
                              "AND channel || ':' || channel_message_id = ANY(%s) AND NOT EXISTS "
                              "(SELECT 1 FROM reply_outbox o WHERE o.inbound_key = m.channel || ':' || "
                              "m.channel_message_id)", (keys,))
    assert len(replies) + attached_silently == 400
    wa_rows = [r for r in replies if r["channel"] == "whatsapp"]
    twilio = sandbox_get(channel_apis, "/_sandbox/twilio/sent")["messages"]
    ours = {r["recipient"] for r in wa_rows}
    sent_wa = [m for m in twilio if m["to"] in ours]
    assert len(sent_wa) == sum(len(r["payload"]["parts"]) for r in wa_rows)
    assert len({m["sid"] for m in sent_wa}) == len(sent_wa)
