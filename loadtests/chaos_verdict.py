"""The chaos verdict: replies counted at the channel APIs, events checked against Postgres.

- Twilio and Gmail: the sandbox's call logs (what the APIs accepted), by recipient. Every
  chaos message has a sender of its own, so the calls to that recipient are the replies to
  that one message: 0 = lost, more than the reply's parts = duplicates.
- Web: there is no channel API; the reply is what the ticket page shows, i.e. the outbound
  rows answering the ticket's message.
- Events: every accepted message that Postgres shows handled must have its `received` event
  and its `replied` or `escalated` event on `support.events`.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from email.utils import parseaddr

import httpx
import psycopg
from confluent_kafka import Consumer, TopicPartition

from loadtests.chaos_traffic import Accepted

_ROWS = """
SELECT k.key,
       (SELECT count(*) FROM messages m WHERE m.channel = split_part(k.key, ':', 1)
           AND m.channel_message_id = substr(k.key, strpos(k.key, ':') + 1)
           AND m.direction = 'inbound') AS inbound,
       (SELECT bool_or(m.handled_at IS NOT NULL) FROM messages m WHERE m.channel = split_part(k.key, ':', 1)
           AND m.channel_message_id = substr(k.key, strpos(k.key, ':') + 1)
           AND m.direction = 'inbound') AS handled,
       (SELECT coalesce(max(o.parts_sent), 0) FROM reply_outbox o WHERE o.inbound_key = k.key) AS parts,
       (SELECT count(*) FROM reply_outbox o WHERE o.inbound_key = k.key AND o.status = 'sent') AS sent,
       (SELECT count(*) FROM messages m WHERE m.in_reply_to = k.key AND m.direction = 'outbound') AS outbound
FROM unnest(%s::text[]) AS k(key)
"""


def db_rows(database_url: str, keys: list[str]) -> dict[str, dict]:
    with psycopg.connect(database_url) as conn:
        cur = conn.execute(_ROWS, (keys,))
        columns = [c.name for c in cur.description]
        return {row[0]: dict(zip(columns, row)) for row in cur.fetchall()}


def api_calls(sandbox_url: str) -> dict[str, Counter]:
    """Replies the channel APIs accepted, by channel and recipient."""
    twilio = httpx.get(f"{sandbox_url}/_sandbox/twilio/sent", timeout=30).json()
    gmail = httpx.get(f"{sandbox_url}/_sandbox/gmail/sent", timeout=30).json()
    calls = {"whatsapp": Counter(), "email": Counter()}
    for item in twilio.get("messages", twilio.get("data", [])):
        calls["whatsapp"][str(item.get("to", "")).removeprefix("whatsapp:")] += 1
    for item in gmail.get("data", []):
        calls["email"][parseaddr(item.get("to") or "")[1].lower()] += 1
    return calls


def events_by_key(bootstrap: str, topic: str, timeout_s: float = 60.0) -> dict[str, set[str]]:
    """Every event kind on the topic, by inbound key (read from the start to the end offsets)."""
    import json
    import time

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "chaos-verdict",
                         "enable.auto.commit": False})
    try:
        meta = consumer.list_topics(topic, timeout=10).topics[topic]
        ends = {}
        for p in meta.partitions:
            _low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            ends[p] = high
        consumer.assign([TopicPartition(topic, p, 0) for p in ends])
        kinds: dict[str, set[str]] = defaultdict(set)
        position = {p: 0 for p in ends}
        deadline = time.monotonic() + timeout_s
        while any(position[p] < ends[p] for p in ends) and time.monotonic() < deadline:
            for msg in consumer.consume(1000, 1.0):
                if msg.error():
                    continue
                position[msg.partition()] = msg.offset() + 1
                try:
                    event = json.loads(msg.value())
                    kinds[event["inbound_key"]].add(event["kind"])
                except (ValueError, KeyError, TypeError):
                    pass
        return kinds
    finally:
        consumer.close()


def judge(accepted: list[Accepted], rows: dict[str, dict], calls: dict[str, Counter],
          events: dict[str, set[str]]) -> dict:
    """Per accepted message: answered once, lost or duplicated; events missing for handled ones."""
    outcome: Counter = Counter()
    failures = []
    events_lost = 0
    for a in accepted:
        channel = a.key.split(":", 1)[0]
        row = rows.get(a.key, {})
        parts = max(int(row.get("parts") or 0), 1)
        if channel == "web":
            replies = int(row.get("outbound") or 0)
            expected = 1
        else:
            recipient = a.recipient.lower() if channel == "email" else a.recipient
            replies = calls[channel].get(recipient, 0)
            expected = parts
        if replies == 0:
            outcome["lost"] += 1
            failures.append({"key": a.key, "problem": "no reply", "inbound_rows": row.get("inbound")})
        elif replies > expected:
            outcome["duplicates"] += 1
            failures.append({"key": a.key, "problem": f"{replies} replies for {expected} part(s)"})
        else:
            outcome["answered_once"] += 1
        if row.get("handled"):
            kinds = events.get(a.key, set())
            if "received" not in kinds or not kinds & {"replied", "escalated"}:
                events_lost += 1
                failures.append({"key": a.key, "problem": f"events {sorted(kinds)}"})
    return {"answered_once": outcome["answered_once"], "lost": outcome["lost"],
            "duplicates": outcome["duplicates"], "events_lost": events_lost, "failures": failures}
