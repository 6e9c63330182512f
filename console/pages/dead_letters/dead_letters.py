"""Dead letters: what could not be processed and why; inspect the raw bytes; replay."""

import streamlit as st
from confluent_kafka import KafkaException

from console import actions, data
from console.render import md
from console.session import allowed, require_login
from fte.kafka import DeliveryFailed

user = require_login()
st.title("Dead letters")


def _on_replay(dead_letter_id: int) -> None:
    if not allowed("replay"):
        st.session_state["dl_flash"] = ("error", "Replaying dead letters needs the admin role.")
        return
    try:
        outcome = actions.replay_dead_letter(dead_letter_id, user)
    except (DeliveryFailed, KafkaException, BufferError) as exc:  # Kafka down: nothing was marked
        st.session_state["dl_flash"] = ("error", f"Replay failed: {type(exc).__name__}: {md(exc)}")
        return
    st.session_state["dl_flash"] = {
        "replayed": ("success", f"Dead letter #{dead_letter_id} was produced to its source topic again."),
        "already": ("info", f"Dead letter #{dead_letter_id} had already been replayed."),
        "missing": ("warning", f"Dead letter #{dead_letter_id} no longer exists."),
    }[outcome]


if flash := st.session_state.pop("dl_flash", None):
    getattr(st, flash[0])(flash[1])

include_replayed = st.toggle("Show replayed", key="dl_include_replayed")
letters = data.dead_letters(include_replayed)
by_reason = data.dead_letters_by_reason()

c1, c2 = st.columns([1, 3])
c1.metric("Waiting for a decision", int((letters["replayed_at"].isna()).sum()) if not letters.empty else 0,
          border=True)
with c2:
    if not by_reason.empty:
        st.dataframe(by_reason, hide_index=True, width="stretch",
                     column_config={"n": st.column_config.NumberColumn("count")})

if letters.empty:
    st.success("No dead letters.")
    st.stop()

st.dataframe(letters, hide_index=True, width="stretch",
             column_config={"id": st.column_config.NumberColumn("#", format="%d"),
                            "created_at": st.column_config.DatetimeColumn("when", format="MMM D HH:mm:ss"),
                            "replayed_at": st.column_config.DatetimeColumn("replayed", format="MMM D HH:mm"),
                            "reason": st.column_config.TextColumn(width="large")})

labels = {int(r.id): f"#{r.id} · {r.source_topic} · {r.reason[:60]}" for r in letters.itertuples()}
chosen = st.selectbox("Inspect", list(labels), format_func=labels.get, key="dl_selected")
letter = data.dead_letter(chosen)
if letter is None:
    st.stop()

st.subheader(f"#{letter['id']} from {md(letter['source_topic'])}")
st.markdown("**Reason:**")
st.text(letter["reason"])
where = (f"partition {int(letter['partition'])}, offset {int(letter['offset'])}"
         if letter["partition"] is not None else "no offset")
st.caption(f"{where} · key {md(bytes(letter['msg_key']).decode('utf-8', 'replace')) if letter['msg_key'] is not None else '–'}")
language, text = actions.describe_raw(bytes(letter["raw"]))
st.code(text, language=language, wrap_lines=True)

replayed = letter["replayed_at"] is not None
if replayed:
    st.info(f"Replayed {letter['replayed_at']:%d %b %H:%M} by {md(letter['replayed_by'])}.")
st.button("Replay to the source topic", key="dl_replay", type="primary", on_click=_on_replay,
          args=(int(letter["id"]),), disabled=replayed or not allowed("replay"), icon=":material/replay:",
          help="Produces the raw bytes again with the original key; fix the cause first (admin).")
