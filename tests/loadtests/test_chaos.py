"""The chaos harness: its verdict counted at the channel APIs, and one short run end to end.

Longer runs (every scenario, thousands of messages, soak) are run by the command:
`python -m loadtests.chaos --scenario all --messages 1000` (see README).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

from loadtests.chaos_traffic import Accepted
from loadtests.chaos_verdict import judge

REPO = Path(__file__).resolve().parents[2]


def row(parts=1, handled=True, outbound=1):
    return {"parts": parts, "handled": handled, "outbound": outbound, "inbound": 1, "sent": 1}


def test_verdict_counts_lost_and_duplicate_replies_at_the_channel_apis_and_missing_events():
    accepted = [Accepted("whatsapp:SM1", "+15550000001", 0), Accepted("whatsapp:SM2", "+15550000002", 0),
                Accepted("email:m1", "a@example.com", 0), Accepted("email:m2", "B@example.com", 0),
                Accepted("web:T1", "c@example.com", 0), Accepted("web:T2", "d@example.com", 0)]
    rows = {"whatsapp:SM1": row(parts=2), "whatsapp:SM2": row(), "email:m1": row(), "email:m2": row(),
            "web:T1": row(), "web:T2": row(outbound=0, handled=False)}
    calls = {"whatsapp": Counter({"+15550000001": 2, "+15550000002": 2}),  # SM2 answered twice
             "email": Counter({"b@example.com": 1})}  # m1 never reached Gmail
    events = {k: {"received", "replied"} for k in rows} | {"web:T1": {"received"}}
    result = judge(accepted, rows, calls, events)
    assert (result["answered_once"], result["lost"], result["duplicates"]) == (3, 2, 1)
    assert result["events_lost"] == 1  # web:T1 handled, its reply event missing
    problems = {f["key"]: f["problem"] for f in result["failures"]}
    assert problems["whatsapp:SM2"] == "2 replies for 1 part(s)" and problems["email:m1"] == "no reply"
    assert problems["web:T1"] == "events ['received']"


def test_flow_kill_under_traffic_on_all_channels_answers_every_message_once(stack):
    result = subprocess.run(
        [sys.executable, "-m", "loadtests.chaos", "--scenario", "flow-kill", "--messages", "30",
         "--rate", "5", "--down", "2", "--settle", "300"],
        env=dict(os.environ), cwd=REPO, capture_output=True, text=True, timeout=900, check=False)
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["faults"] == {"flow-kill": 1}, result.stdout[-3000:]
    assert summary["accepted"] == 30
    assert (summary["lost"], summary["duplicates"], summary["events_lost"]) == (0, 0, 0), result.stdout[-5000:]
    assert summary["answered_once"] == 30 and result.returncode == 0
