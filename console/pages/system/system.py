"""System: Kafka and Postgres health, consumer lag per partition, reply delivery per channel,
service crash loops."""

import streamlit as st

from console import charts, data
from console.session import require_login

require_login()
st.title("System")
s = data.settings()


@st.fragment(run_every="10s")
def health() -> None:
    kafka = data.kafka_health(s.kafka_bootstrap)
    pg = data.postgres_health()
    k, p = st.columns(2)
    with k:
        if kafka["up"]:
            ours = {t: n for t, n in kafka["partitions"].items() if t.startswith(s.TOPIC_PREFIX)}
            st.metric("Kafka", "up", delta=f"{len(kafka['brokers'])} broker(s) · {len(ours)} topics",
                      delta_color="off", delta_arrow="off", border=True)
            st.caption(f"cluster {kafka['cluster_id']} · {', '.join(kafka['brokers'])}")
        else:
            st.metric("Kafka", "down", delta=kafka["error"][:80], delta_color="inverse", delta_arrow="off",
                      border=True)
    with p:
        if pg["up"]:
            st.metric("Postgres", "up", delta=f"{pg['connections']} connections · "
                      f"{pg['database_bytes'] / 1e6:.0f} MB", delta_color="off", delta_arrow="off", border=True)
            st.caption(f"{pg['version'].split(' on ')[0]} · up {str(pg['uptime']).split('.')[0]}")
        else:
            st.metric("Postgres", "down", delta=pg["error"][:80], delta_color="inverse", delta_arrow="off",
                      border=True)

    st.subheader("Intake per channel")
    if pg["up"]:
        intake = data.intake()
        for col, (channel, d) in zip(st.columns(len(intake)), intake.items()):
            col.metric(f"{channel} intake", d["intake"], delta_arrow="off", border=True,
                       delta=f"last message {(d['last_message_at'] or 'never')[:19]}",
                       delta_color="normal" if d["intake"] == "ok" else "inverse")
        email = intake["email"]
        st.caption(f"Gmail: cursor {email['cursor']} · mailbox history id {email['mailbox_history_id']} · "
                   f"watch expires {(email['watch_expires_at'] or 'not watched')[:19]} · last push "
                   f"{(email['last_push_at'] or 'never')[:19]} · last poll {(email['last_poll_at'] or 'never')[:19]}. "
                   f"WhatsApp: last webhook {(intake['whatsapp']['last_webhook_at'] or 'never')[:19]}, "
                   f"{intake['whatsapp']['relay_pending']} waiting for Kafka. "
                   "ok = messages arriving or nothing due.")
        if email.get("note"):
            st.error(email["note"])

    st.subheader("Consumer lag per partition")
    lag = data.consumer_lag() if kafka["up"] and pg["up"] else None
    if lag is None or lag.empty:
        st.info("No flow progress recorded yet.")
    else:
        total = int(lag["lag"].fillna(0).sum())
        st.caption(f"High watermark minus the flow's next offset (flow_progress). Total lag {total:,}; "
                   "red above the 100-message alert threshold.")
        left, right = st.columns([2, 3])
        if total:
            shown = lag.assign(topic=lag["topic"].str.removeprefix(s.TOPIC_PREFIX))
            left.altair_chart(charts.lag_per_partition(shown), width="stretch",
                              height=charts.bar_height(len(shown)))
        else:
            left.success("Every flow is caught up with its topics.")
        right.dataframe(lag.sort_values(["flow", "topic", "partition"]), hide_index=True, width="stretch",
                        column_config={"updated_at": st.column_config.DatetimeColumn("progress at", format="HH:mm:ss")})

    st.subheader("Reply delivery per channel")
    outbox = data.outbox_by_channel() if pg["up"] else None
    if outbox is None or outbox.empty:
        st.info("No replies in the outbox yet.")
    else:
        states = data.delivery_states(outbox)
        for col, d in zip(st.columns(len(states)), states.to_dict("records")):
            col.metric(f"{d['channel']} delivery", d["state"],
                       delta=f"{d['stuck']} parked or failed" if d["stuck"] else "nothing waiting",
                       delta_arrow="off", delta_color="normal" if d["state"] == "ok" else "inverse",
                       border=True)
        st.caption("From the reply outbox: the dispatcher retries parked replies behind a circuit "
                   "breaker per channel.")
        # Tall enough for the five-status legend beside the bars.
        st.altair_chart(charts.outbox_status(outbox), width="stretch",
                        height=max(150, charts.bar_height(len(outbox))))
        st.dataframe(outbox.drop(columns=["last_stuck_at"]), hide_index=True, width="stretch",
                     column_config={"last_sent_at": st.column_config.DatetimeColumn("last sent", format="HH:mm:ss"),
                                    "last_error": st.column_config.TextColumn(width="large")})

    st.subheader("Service restarts")
    loops = data.crash_loops(1.0) if pg["up"] else None
    if loops is None or loops.empty:
        st.success("No service restarted in a loop in the last hour.")
    else:
        st.error(f"Crash loop: {', '.join(sorted(loops['service'].unique()))} restarted 3 or more "
                 "times within 10 minutes (fte up restarts with back-off).")
        st.dataframe(loops, hide_index=True, width="stretch",
                     column_config={"raised_at": st.column_config.DatetimeColumn("at", format="HH:mm:ss"),
                                    "hint": st.column_config.TextColumn(width="large")})

    st.subheader("Circuit breakers")
    breakers = data.breakers() if pg["up"] else None
    if breakers is None or breakers.empty:
        st.info("No dispatcher has reported in the last minute: replies are not being sent.")
    else:
        st.caption("closed = sending; open = the channel API failed repeatedly, sends paused; "
                   "half-open = one probe allowed. Reported by each running dispatcher.")
        st.dataframe(breakers, hide_index=True, width="stretch",
                     column_config={"opened_at": st.column_config.DatetimeColumn("opened", format="HH:mm:ss"),
                                    "updated_at": st.column_config.DatetimeColumn("reported", format="HH:mm:ss")})


health()

st.subheader("Recent console actions")
st.dataframe(data.recent_audit(20), hide_index=True, width="stretch",
             column_config={"at": st.column_config.DatetimeColumn("when", format="MMM D HH:mm:ss")})
