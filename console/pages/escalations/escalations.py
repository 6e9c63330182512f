"""Escalations: the queue the agent handed to people; assign, resolve, reply as a human."""

import uuid
from datetime import UTC, datetime

import streamlit as st

from console import actions, data, targets
from console.render import md
from console.session import allowed, require_login
from schema.events import EscalationReason

user = require_login()
st.title("Escalations")

AGES = {"any age": 0, "older than 15 min": 900, "older than 1 h": 3600, "older than 4 h": 14400,
        "older than 1 day": 86400}
STATUSES = ["open", "assigned", "resolved"]
AUTHOR_AVATAR = {"customer": ":material/person:", "agent": ":material/smart_toy:",
                 "human": ":material/support_agent:", "system": ":material/info:"}


def _age(seconds: float) -> str:
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def _flash(kind: str, text: str) -> None:
    st.session_state["esc_flash"] = (kind, text)


def _refused(action: str) -> bool:
    if allowed(action):
        return False
    _flash("error", f"Your role may not {action} here (agent role needed).")
    return True


def _on_assign(escalation_id: int) -> None:
    if _refused("assign"):
        return
    if actions.assign(escalation_id, user):
        _flash("success", f"Escalation #{escalation_id} is assigned to you.")
    else:
        _flash("warning", f"Escalation #{escalation_id} is already resolved.")


def _on_resolve(escalation_id: int) -> None:
    if _refused("resolve"):
        return
    note = st.session_state.get("esc_note", "")
    if actions.resolve(escalation_id, user, note):
        st.session_state["esc_note"] = ""
        _flash("success", f"Escalation #{escalation_id} resolved: the agent answers this customer again.")
    else:
        _flash("warning", f"Escalation #{escalation_id} was already resolved.")


def _compose_key(escalation_id: int) -> str:
    """One idempotency key per composed reply: a double click sends it once."""
    return st.session_state.setdefault(f"esc_compose_{escalation_id}", uuid.uuid4().hex)


def _on_reply(escalation_id: int) -> None:
    if _refused("reply"):
        return
    text = st.session_state.get("esc_reply_text", "")
    if not text.strip() and st.session_state.get("esc_last_sent") == escalation_id:
        _flash("info", "That reply was already queued; it is sent once.")  # a second click
        return
    try:
        result = actions.reply_as_human(escalation_id, user, text,
                                        reply_id=_compose_key(escalation_id))
    except ValueError as exc:
        _flash("error", md(exc))
        return
    st.session_state["esc_reply_text"] = ""
    st.session_state.pop(f"esc_compose_{escalation_id}", None)  # the next reply is a new one
    st.session_state["esc_last_sent"] = escalation_id
    where = f"{result.reply.channel.value} to {md(result.reply.recipient)}"
    if result.duplicate:
        _flash("info", f"This reply was already queued for {where}; it is sent once.")
    else:
        _flash("success", f"Reply queued for {where}; the dispatcher delivers it.")


open_now, next_opening = targets.business_hours_status(datetime.now(UTC))
if not open_now and next_opening:
    st.info(f"Outside business hours: customers are told a person will answer from "
            f"{next_opening:%a %d %b %H:%M %Z}.", icon=":material/schedule:")
st.caption(f"Business hours: {targets.describe_hours()}")

if flash := st.session_state.pop("esc_flash", None):
    getattr(st, flash[0])(flash[1])

reasons_known = sorted({r.value for r in EscalationReason} | set(data.escalation_reasons_seen()))
f1, f2, f3, f4 = st.columns(4)
statuses = f1.multiselect("Status", STATUSES, default=["open", "assigned"], key="esc_status")
reasons = f2.multiselect("Reason", reasons_known, placeholder="all reasons", key="esc_reason")
channels = f3.multiselect("Channel", data.CHANNELS, placeholder="all channels", key="esc_channel")
age = f4.selectbox("Age", list(AGES), key="esc_age")

queue = data.escalation_queue(statuses or STATUSES, reasons or reasons_known,
                              channels or data.CHANNELS, AGES[age])
st.caption(f"{len(queue)} escalation(s) · most urgent first, then oldest")
if queue.empty:
    st.success("Nothing in the queue for these filters.")
    st.stop()

table = queue.assign(age=queue["age_s"].map(_age))
st.dataframe(
    table[["id", "priority", "status", "reason", "channel", "customer", "age", "messages_since",
           "assigned_to", "detail"]],
    hide_index=True, width="stretch",
    column_config={"id": st.column_config.NumberColumn("#", format="%d"),
                   "messages_since": st.column_config.NumberColumn("new msgs"),
                   "detail": st.column_config.TextColumn(width="large")},
)

labels = {int(r.id): f"#{r.id} · {r.reason} · {r.customer or 'customer ' + str(r.customer_id)} · {r.channel}"
          for r in queue.itertuples()}
selected = st.selectbox("Open escalation", list(labels), format_func=labels.get, key="esc_selected")
esc = data.escalation(selected)
if esc is None:
    st.stop()

st.divider()
head, side = st.columns([3, 2])
with head:
    st.subheader(f"#{esc['id']} · {md(esc['customer']) or 'customer ' + str(esc['customer_id'])}")
    st.markdown(
        f"**{esc['reason']}** on **{esc['channel']}** · priority {esc['priority']} · "
        f"status **{esc['status']}**"
        + (f" · assigned to **{md(esc['assigned_to'])}**" if esc["assigned_to"] else "")
        + (f" · resolved by **{md(esc['resolved_by'])}**" if esc["resolved_by"] else ""))
    if esc["detail"]:
        st.text(esc["detail"])
    acks = data.acks_of_escalation(esc)
    if not acks.empty:
        told = acks.iloc[-1]
        st.info(f"**The customer was told** ({md(told['kind'].replace('_', ' '))}, {md(told['status'])}): "
                f"{md(told['body'], 2000)}", icon=":material/schedule_send:")
    st.markdown("##### Messages since the escalation")
    messages = data.messages_since_escalation(esc)
    if messages.empty:
        st.info("No messages recorded for this customer since the escalation.")
    for m in messages.itertuples():
        role = "user" if m.direction == "inbound" else "assistant"
        with st.chat_message(role, avatar=AUTHOR_AVATAR.get(m.author)):
            st.caption(f"{m.author} · {m.channel} · {m.occurred_at:%d %b %H:%M}"
                       + (f" · {md(m.subject)}" if m.subject else ""))
            st.text(m.body)

with side:
    active = esc["status"] in ("open", "assigned")
    st.markdown("##### Take over")
    if not allowed("assign"):
        st.caption("Viewers see the queue; assigning, resolving and replying need the agent role.")
    st.button("Assign to me", key="esc_assign", on_click=_on_assign, args=(int(esc["id"]),),
              disabled=not active or esc["assigned_to"] == user or not allowed("assign"), icon=":material/person_add:",
              width="stretch")
    st.text_input("Resolution note", key="esc_note", disabled=not active,
                  placeholder="what was done (optional)")
    st.button("Resolve and hand back to the agent", key="esc_resolve", on_click=_on_resolve,
              args=(int(esc["id"]),), disabled=not active or not allowed("resolve"),
              icon=":material/task_alt:", width="stretch")

    st.markdown("##### Reply as a human")
    if missing := actions.missing_modules(*actions.REPLY_MODULES):
        st.warning(f"The reply path is not installed here ({', '.join(missing)} missing).")
    try:
        with data.connection() as conn:
            target = actions.reply_target(conn, esc)
        st.caption(f"Goes by **{target.channel.value}** to **{md(target.recipient)}** "
                   "(the escalation's own channel and address), through the reply outbox.")
        can_reply = True
    except ValueError as exc:
        st.warning(md(exc))
        can_reply = False
    st.text_area("Reply", key="esc_reply_text", height=160, max_chars=actions.MAX_REPLY_CHARS,
                 placeholder="Write to the customer…", label_visibility="collapsed")
    st.button("Send reply", key="esc_reply_send", type="primary", on_click=_on_reply,
              args=(int(esc["id"]),), disabled=not can_reply or bool(missing) or not allowed("reply"),
              icon=":material/send:",
              width="stretch")
