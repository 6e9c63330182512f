"""Knowledge base: search, add, edit and delete articles; what answered most, what found
nothing or no confident answer; leads label how messages were handled (training data)."""

import streamlit as st

from console import actions, charts, data, labels
from console.session import allowed, require_login

user = require_login()
st.title("Knowledge base")


def _split(text: str) -> list[str]:
    return [t.strip() for t in text.replace("\n", ",").split(",") if t.strip()]


def _on_save(original_slug: str | None) -> None:
    ss = st.session_state
    if not allowed("kb_edit"):
        ss["kb_flash"] = ("error", "Editing the knowledge base needs the admin role.")
        return
    try:
        slug = actions.kb_save(user, slug=ss["kb_slug"], title=ss["kb_title"], body=ss["kb_body"],
                               intents=_split(ss["kb_intents"]), tags=_split(ss["kb_tags"]),
                               replaces=original_slug)
    except ValueError as exc:
        ss["kb_flash"] = ("error", str(exc))
        return
    ss["kb_flash"] = ("success", f"Saved and re-embedded “{slug}”.")
    ss["kb_selected"] = slug


def _on_delete(slug: str) -> None:
    if not allowed("kb_edit"):
        st.session_state["kb_flash"] = ("error", "Editing the knowledge base needs the admin role.")
        return
    removed = actions.kb_delete(user, slug)
    st.session_state["kb_flash"] = ("success", f"Deleted “{slug}” ({removed} chunk(s)).") if removed \
        else ("info", f"“{slug}” was already gone.")
    st.session_state["kb_selected"] = NEW


NEW = "New article…"

if flash := st.session_state.pop("kb_flash", None):
    getattr(st, flash[0])(flash[1])

articles_tab, usage_tab, labels_tab = st.tabs(["Articles", "Usage", "Label answers"])

with articles_tab:
    query = st.text_input("Search articles", key="kb_query", placeholder="refund, delivery, password…")
    articles = data.kb_articles(query)
    st.caption(f"{len(articles)} article(s)" + (" matching" if query.strip() else ""))
    st.dataframe(articles, hide_index=True, width="stretch",
                 column_config={"updated_at": st.column_config.DatetimeColumn("updated", format="MMM D HH:mm"),
                                "embedded": st.column_config.CheckboxColumn("embedded")})

    question = st.text_input("Try a customer question", key="kb_ask",
                             placeholder="my parcel hasn't arrived yet",
                             help="The agent's own hybrid search (embeddings + full text), best first.")
    if question.strip() and not actions.missing_modules(*actions.KB_MODULES):
        hits = data.kb_ask(question)
        if hits.empty:
            st.warning("Nothing in the knowledge base matches: the agent would ask or escalate.")
        else:
            st.dataframe(hits, hide_index=True, width="stretch",
                         column_config={"score": st.column_config.ProgressColumn(
                             "confidence", min_value=0.0, max_value=1.0, format="%.2f"),
                             "chunk": st.column_config.TextColumn(width="large")})

    options = [NEW, *articles["slug"].tolist()]
    if st.session_state.get("kb_selected") not in options:
        st.session_state["kb_selected"] = NEW
    chosen = st.selectbox("Edit", options, key="kb_selected")
    original = None if chosen == NEW else chosen
    chunks = data.kb_article(original) if original else None
    current = {
        "slug": original or "",
        "title": chunks["title"].iloc[0] if chunks is not None and not chunks.empty else "",
        "body": "\n\n".join(chunks["body"]) if chunks is not None and not chunks.empty else "",
        "intents": ", ".join(chunks["intents"].iloc[0]) if chunks is not None and not chunks.empty else "",
        "tags": ", ".join(chunks["tags"].iloc[0]) if chunks is not None and not chunks.empty else "",
    }
    # Load the chosen article into the editor when the choice changes.
    if st.session_state.get("kb_loaded") != chosen:
        for field, value in current.items():
            st.session_state[f"kb_{field}"] = value
        st.session_state["kb_loaded"] = chosen

    missing = actions.missing_modules(*actions.KB_MODULES)
    if missing:
        st.warning(f"Editing needs the knowledge module ({', '.join(missing)} missing).")
    with st.container(border=True):
        a, b = st.columns([1, 2])
        a.text_input("Slug", key="kb_slug", help="lower-case words joined by dashes")
        b.text_input("Title", key="kb_title")
        st.text_area("Body (markdown)", key="kb_body", height=260)
        c, d = st.columns(2)
        c.text_input("Intents", key="kb_intents", help="comma separated, e.g. get_refund, track_refund")
        d.text_input("Tags", key="kb_tags", help="comma separated")
        save, delete, _ = st.columns([1, 1, 3])
        save.button("Save and re-embed", key="kb_save", type="primary", on_click=_on_save,
                    args=(original,), icon=":material/save:", disabled=bool(missing) or not allowed("kb_edit"))
        if original:
            confirm = st.checkbox(f"Yes, delete “{original}”", key="kb_confirm_delete")
            delete.button("Delete", key="kb_delete", on_click=_on_delete, args=(original,),
                          disabled=not confirm or bool(missing) or not allowed("kb_edit"),
                          icon=":material/delete:")

with usage_tab:
    days = st.segmented_control("Range", [1, 7, 30], default=7, format_func=lambda d: f"{d} day(s)",
                                key="kb_days") or 7
    left, right = st.columns(2)
    with left:
        st.subheader("Articles that answered most")
        top = data.kb_top_answering(days)
        if top.empty:
            st.info("No answers drawn from the knowledge base in this range.")
        else:
            st.altair_chart(charts.top_articles(top), width="stretch", height=charts.bar_height(len(top)))
    with right:
        st.subheader("Questions that found nothing")
        missing = data.kb_unanswered(days)
        if missing.empty:
            st.success("Every question found an article.")
        else:
            st.dataframe(missing, hide_index=True, width="stretch",
                         column_config={"created_at": st.column_config.DatetimeColumn("when", format="MMM D HH:mm"),
                                        "score": st.column_config.NumberColumn(format="%.2f"),
                                        "query": st.column_config.TextColumn(width="large")})

    st.subheader("Questions most often without a confident answer")
    unsure = labels.not_confident(days)
    if unsure.empty:
        st.success("Every question got a confident answer in this range.")
    else:
        st.dataframe(unsure, hide_index=True, width="stretch",
                     column_config={"last_seen": st.column_config.DatetimeColumn("last", format="MMM D HH:mm"),
                                    "question": st.column_config.TextColumn(width="large")})

with labels_tab:
    st.caption("Mark how a message was handled; labels join the training data on the next "
               "`fte model train`, which compares the new model with the current one on them.")
    handled = labels.recent_handled()
    if handled.empty:
        st.info("No handled messages in the last 7 days.")
    else:
        st.dataframe(handled.drop(columns=["inbound_key"]), hide_index=True, width="stretch",
                     column_config={"text": st.column_config.TextColumn(width="large")})
        keys = handled["inbound_key"].tolist()
        picked = st.selectbox("Message", keys, key="lbl_message", format_func=lambda k: " ".join(
            str(handled.loc[handled["inbound_key"] == k, "text"].iloc[0]).split())[:90])
        row = handled[handled["inbound_key"] == picked].iloc[0].to_dict()
        verdict = st.radio("Verdict", list(labels.VERDICTS), key="lbl_verdict", horizontal=True,
                           format_func=labels.VERDICTS.get)
        arts = labels.articles()
        slug = reason = None
        if verdict in ("wrong_answer", "needless_escalation", "right"):
            choices = ["(none: out of scope)", *arts["slug"].tolist()]
            chosen = st.selectbox("The article that answers it", choices, key="lbl_slug")
            slug = None if chosen == choices[0] else chosen
        if verdict in ("missed_escalation", "right"):
            reason = st.selectbox("Escalation reason", ["", *labels.REASONS], key="lbl_reason") or None
        if st.button("Save label", key="lbl_save", type="primary"):
            try:
                labels.save_label(user, row, verdict, slug=slug, reason=reason)
                st.success("Label saved.")
            except ValueError as exc:
                st.error(str(exc))
    stored = labels.labels()
    st.subheader(f"Labels stored ({len(stored)})")
    if not stored.empty:
        st.dataframe(stored, hide_index=True, width="stretch")
