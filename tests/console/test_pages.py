"""SLA, customers, dead letters and system pages against the seeded database."""

from console_apptest import frame_with, open_page, texts


def test_sla_page_charts_p95_per_channel_and_lists_breaches(console_env):
    at = open_page("sla")
    shown = texts(at)
    whatsapp = {m.label: m for m in at.metric}["whatsapp · latest p95 first response"]
    assert (whatsapp.value, whatsapp.delta) == ("4.2 s", "SLA 5 min")
    assert len(at.get("vega_lite_chart")) == 4  # p95 per channel (3) + met vs breached
    breaches = at.dataframe[0].value
    assert breaches["ticket_id"].tolist() == ["T-grace-1"]
    assert breaches["customer"].tolist() == ["Grace Hopper"]
    assert "Red: the channel's first-response SLA" in shown


def test_customer_search_by_phone_finds_identifiers_merges_and_timeline(console_env):
    at = open_page("customers")
    at.text_input(key="cust_query").input("+1 (555) 010-0200").run()
    assert not at.exception, at.exception
    found = at.dataframe[0].value
    assert found["id"].tolist() == [2]
    identifiers, merges = frame_with(at, "first_channel"), frame_with(at, "merged_id")
    timeline = frame_with(at, "direction")
    assert set(identifiers["value"]) == {"+15550100200", "grace@example.org"}
    assert merges["merged_id"].tolist() == [3]
    assert timeline["body"].tolist() == ["I need to talk to a human agent please"]


def test_customer_search_by_email_prefix_and_name(console_env):
    at = open_page("customers")
    at.text_input(key="cust_query").input("ADA@example.com").run()
    assert at.dataframe[0].value["id"].tolist() == [1]
    timeline = frame_with(at, "direction")
    assert set(timeline["channel"]) == {"email", "whatsapp"}  # one timeline across channels
    at.text_input(key="cust_query").input("linus").run()
    assert at.dataframe[0].value["display_name"].tolist() == ["Linus Quiet"]


def test_merged_customer_leads_to_the_survivor(console_env):
    at = open_page("customers")
    at.text_input(key="cust_query").input("G. Hopper").run()
    assert "merged into #2" in texts(at)


def test_dead_letters_list_inspect_and_replay_once(console_env, db):
    from confluent_kafka import Consumer, TopicPartition

    at = open_page("dead_letters", user="ben")
    letters = frame_with(at, "bytes")
    assert len(letters) == 2
    dl_id = int(db.execute("SELECT id FROM dead_letters WHERE \"offset\" = 17").fetchone()[0])
    at.selectbox(key="dl_selected").select(dl_id).run()
    assert '"channel": "whatsapp"' in at.code[0].value
    assert "body: String should have at least 1 character" in texts(at)
    at.button(key="dl_replay").click().run()
    assert not at.exception, at.exception
    replayed_at, replayed_by = db.execute("SELECT replayed_at, replayed_by FROM dead_letters WHERE id = %s",
                                          (dl_id,)).fetchone()
    assert replayed_at is not None and replayed_by == "ben"
    assert "produced to its source topic again" in texts(at)
    assert frame_with(at, "bytes")["id"].tolist() != [] and dl_id not in frame_with(at, "bytes")["id"].tolist()
    at.toggle(key="dl_include_replayed").set_value(True).run()
    at.selectbox(key="dl_selected").select(dl_id).run()
    assert at.button(key="dl_replay").disabled and "by ben" in texts(at)

    consumer = Consumer({"bootstrap.servers": console_env["kafka_bootstrap"], "group.id": "t",
                         "enable.auto.commit": False})
    counts = {p: consumer.get_watermark_offsets(TopicPartition(console_env["inbound_topic"], p), timeout=10)[1]
              for p in range(4)}
    assert sum(counts.values()) == 1  # produced once, to the source topic
    consumer.assign([TopicPartition(console_env["inbound_topic"], p, 0) for p in range(4)])
    msg = consumer.poll(10)
    consumer.close()
    assert msg.value() == b'{"channel": "whatsapp", "body": ""}' and msg.key() == b"phone:+15550100999"

    # A second replay (another lead, a stale page) produces nothing more.
    from console import actions
    assert actions.replay_dead_letter(dl_id, "ana") == "already"
    assert db.execute("SELECT count(*) FROM console_audit WHERE action = 'replay'").fetchone() == (1,)


def test_system_page_shows_health_lag_and_outbox_per_channel(console_env):
    at = open_page("system")
    metrics = {m.label: m for m in at.metric}
    assert metrics["Kafka"].value == "up" and metrics["Postgres"].value == "up"
    lag = next(d.value for d in at.dataframe if "high_watermark" in d.value.columns)
    assert set(lag["topic"]) >= {console_env["topic_prefix"] + "channel.whatsapp.inbound"}
    outbox = next(d.value for d in at.dataframe if "parked" in d.value.columns).set_index("channel")
    assert outbox.loc["whatsapp", "parked"] == 1 and outbox.loc["email", "sent"] == 2
    assert outbox.loc["whatsapp", "last_error"] == "HTTP 503 from Twilio"
    assert metrics["whatsapp delivery"].value == "failing" and metrics["email delivery"].value == "ok"
    breakers = next(d.value for d in at.dataframe if "consecutive_failures" in d.value.columns)
    assert dict(zip(breakers["channel"], breakers["state"])) == {"email": "closed", "whatsapp": "open"}
