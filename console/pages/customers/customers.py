"""Customers: find one by email, phone or name; their identifiers, merges and one timeline."""

import streamlit as st

from console import charts, data
from console.render import md
from console.session import require_login

require_login()
st.title("Customers")

text = st.text_input("Search by email, phone or name", key="cust_query",
                     placeholder="jane@example.com · +1 555 010 0100 · Jane")
if len(text.strip()) < 2:
    st.caption("Type at least two characters.")
    st.stop()

found = data.search_customers(text)
if found.empty:
    st.info("No customer matches.")
    st.stop()

st.dataframe(found[["id", "display_name", "identifiers", "last_message_at", "merged_into"]],
             hide_index=True, width="stretch",
             column_config={"id": st.column_config.NumberColumn("#", format="%d"),
                            "last_message_at": st.column_config.DatetimeColumn("last message", format="MMM D HH:mm"),
                            "merged_into": st.column_config.NumberColumn("merged into", format="%d")})
labels = {int(r.id): f"#{r.id} · {r.display_name or '(no name)'} · {r.identifiers or ''}"
          for r in found.itertuples()}
chosen = st.selectbox("Customer", list(labels), format_func=labels.get, key="cust_selected")
customer = data.customer(chosen)
while customer and customer["merged_into"] is not None:  # follow merges to the survivor
    st.info(f"Customer #{customer['id']} was merged into #{customer['merged_into']}; showing the survivor.")
    customer = data.customer(customer["merged_into"])
cid = int(customer["id"])

st.divider()
st.subheader(f"#{cid} · {md(customer['display_name']) or '(no name)'}")
left, right = st.columns(2)
with left:
    st.markdown("##### Identifiers")
    st.dataframe(data.identifiers(cid), hide_index=True, width="stretch",
                 column_config={"created_at": st.column_config.DatetimeColumn("linked", format="MMM D HH:mm")})
with right:
    st.markdown("##### Merge history")
    merges = data.merges(cid)
    if merges.empty:
        st.caption("Never merged.")
    else:
        st.dataframe(merges[["merged_at", "survivor_id", "survivor", "merged_id", "merged", "reason", "moved"]],
                     hide_index=True, width="stretch",
                     column_config={"merged_at": st.column_config.DatetimeColumn("when", format="MMM D HH:mm")})

st.markdown("##### Timeline across channels")
timeline = data.timeline(cid)
if timeline.empty:
    st.caption("No messages.")
else:
    st.altair_chart(charts.timeline(timeline), width="stretch")
    st.dataframe(timeline[["occurred_at", "channel", "direction", "author", "subject", "body", "ticket_id"]],
                 hide_index=True, width="stretch",
                 column_config={"occurred_at": st.column_config.DatetimeColumn("when", format="MMM D HH:mm:ss"),
                                "body": st.column_config.TextColumn(width="large")})

t1, t2 = st.columns(2)
with t1:
    st.markdown("##### Tickets")
    st.dataframe(data.tickets_of(cid), hide_index=True, width="stretch")
with t2:
    st.markdown("##### Escalations")
    st.dataframe(data.escalations_of(cid), hide_index=True, width="stretch")
