// Support page: client-side checks mirror the server's (ingress/models.py), the server
// stays the judge; its 422 field errors are shown next to the fields too.
"use strict";

const RULES = {
  name: (v) => v.trim().length >= 2 || "Please enter your name (at least 2 characters).",
  email: (v) => /^[^\s@]+@[^\s@]+\.[^\s@]+$/.test(v.trim()) || "Please enter a valid email address.",
  phone: (v) => v.trim() === "" || /^\+[1-9]\d{7,14}$/.test(v.replace(/[\s().-]/g, "")) ||
    "Use international format, e.g. +14155550100.",
  subject: (v) => v.trim().length >= 5 || "The subject needs at least 5 characters.",
  message: (v) => v.trim().length >= 10 || "Please describe your request (at least 10 characters).",
};
const CATEGORIES = ["general", "technical", "billing", "feedback", "bug_report"];

function setError(id, text) {
  const input = document.getElementById(id);
  const slot = document.getElementById(`${id}-error`);
  if (slot) slot.textContent = text || "";
  if (input) input.setAttribute("aria-invalid", text ? "true" : "false");
}

function validate(form) {
  let firstBad = null;
  for (const [field, rule] of Object.entries(RULES)) {
    const result = rule(form.elements[field].value);
    setError(field, result === true ? "" : result);
    if (result !== true && !firstBad) firstBad = form.elements[field];
  }
  return firstBad;
}

function show(el, cls, text) {
  el.className = cls;
  el.textContent = text;
}

async function submitRequest(event) {
  event.preventDefault();
  const form = event.currentTarget;
  const status = document.getElementById("submit-status");
  const bad = validate(form);
  if (bad) { bad.focus(); return; }
  const body = {};
  for (const field of ["name", "email", "subject", "message", "category"]) {
    body[field] = form.elements[field].value.trim();
  }
  if (!CATEGORIES.includes(body.category)) body.category = "general";
  const phone = form.elements.phone.value.replace(/[\s().-]/g, "");
  if (phone) body.phone = phone;
  const button = document.getElementById("submit");
  button.disabled = true;
  form.setAttribute("aria-busy", "true");
  show(status, "", "Sending your request…");
  try {
    const response = await fetch("/support/submit", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
    });
    const data = await response.json().catch(() => ({}));
    if (response.status === 202) {
      show(status, "ok", "Thank you! Your ticket number is ");
      const ticket = document.createElement("strong");
      ticket.id = "ticket-number";
      ticket.textContent = data.ticket_id;
      status.append(ticket, ". Keep it to check the status below.");
      document.getElementById("ticket-id").value = data.ticket_id;
      form.reset();
    } else if (response.status === 422 && Array.isArray(data.detail)) {
      for (const err of data.detail) {
        const field = (err.loc || []).slice(-1)[0];
        if (field in RULES) setError(field, err.msg);
      }
      show(status, "fail", "Please correct the highlighted fields.");
    } else if (response.status === 429 || response.status === 503) {
      const wait = response.headers.get("Retry-After");
      show(status, "fail", `We are busy right now and your request was not recorded. Please try again${wait ? ` in ${wait} seconds` : " shortly"}.`);
    } else {
      show(status, "fail", `Sorry, something went wrong (${response.status}). Your request was not recorded.`);
    }
  } catch (err) {
    show(status, "fail", "We could not reach the server. Check your connection and try again.");
  } finally {
    button.disabled = false;
    form.removeAttribute("aria-busy");
  }
}

const STATUS_TEXT = {
  open: "We received your request and are working on it.",
  answered: "We have answered your request.",
  escalated: "A member of our team will follow up with you.",
  resolved: "Your request is resolved.",
  closed: "Your request is closed.",
};

const REFRESH_MS = 10000;  // the open ticket re-reads itself while the page is visible
let openTicket = null;
let refreshTimer = null;
let replyId = null;  // one id per composed reply: a double click or retry sends it once

function newReplyId() {
  return (crypto.randomUUID ? crypto.randomUUID() : `${Date.now()}-${Math.random()}`.replace(/[^0-9a-z]/gi, "")).replace(/-/g, "");
}

function renderTicket(ticket) {
  const out = document.getElementById("ticket-status");
  out.className = "ok";
  out.textContent = "";
  const heading = document.createElement("p");
  heading.id = "ticket-state";
  heading.textContent = `Status: ${ticket.status}. ${STATUS_TEXT[ticket.status] || ""}`;
  out.append(heading);
  const list = document.createElement("ul");
  list.className = "messages";
  list.setAttribute("aria-label", "Messages on this ticket");
  for (const m of ticket.messages) {
    const item = document.createElement("li");
    const who = m.direction === "inbound" ? "You" : "Support";
    // textContent only: customer and agent text is never interpreted as HTML.
    item.textContent = `${who}, ${new Date(m.occurred_at).toLocaleString()}:\n${m.body}`;
    list.append(item);
  }
  if (ticket.messages.length) out.append(list);
  document.getElementById("reply-section").hidden = ticket.status === "closed";
  renderContacts(ticket.contacts || []);
}

// Confirming the ticket's email/phone (/support/verify/*): the server knows the addresses;
// the page only ever sees them masked, and names the kind.
const KIND_NAME = { email: "email", phone: "phone" };
let shownContacts = "";  // re-render only on change: a refresh never steals focus from a button
let pendingKind = null;  // the kind whose code was last sent

function apiDetail(data, fallback) {
  if (typeof data.detail === "string") return data.detail;
  if (Array.isArray(data.detail)) return data.detail.map((e) => e.msg).join(" ");
  return fallback;
}

function renderContacts(contacts) {
  const section = document.getElementById("verify-section");
  const key = JSON.stringify(contacts);
  section.hidden = contacts.length === 0;
  if (key === shownContacts) return;
  shownContacts = key;
  const list = document.getElementById("verify-contacts");
  list.textContent = "";
  for (const c of contacts) {
    if (!(c.kind in KIND_NAME)) continue;
    const item = document.createElement("li");
    const label = document.createElement("span");
    label.textContent = `Your ${KIND_NAME[c.kind]}: ${c.masked}`;
    item.append(label);
    if (c.verified) {
      const done = document.createElement("span");
      done.className = "verified";
      done.textContent = "Confirmed";
      item.append(done);
    } else {
      const button = document.createElement("button");
      button.type = "button";
      button.dataset.kind = c.kind;
      button.textContent = `Send a code to my ${KIND_NAME[c.kind]}`;
      button.addEventListener("click", () => startVerification(c.kind, button));
      item.append(button);
    }
    list.append(item);
  }
  if (pendingKind && contacts.some((c) => c.kind === pendingKind && c.verified)) {
    pendingKind = null;  // confirmed meanwhile (e.g. by the emailed link)
    document.getElementById("verify-form").hidden = true;
  }
}

async function startVerification(kind, button) {
  const status = document.getElementById("verify-status");
  if (!openTicket) return;
  button.disabled = true;
  show(status, "", "Sending a code…");
  try {
    const response = await fetch("/support/verify/start", {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ ticket_id: openTicket, kind }),
    });
    const data = await response.json().catch(() => ({}));
    if (response.status === 202) {
      pendingKind = kind;
      const minutes = Math.round(data.expires_in_s / 60);
      const how = kind === "email" ? " (or open the link in that email)" : " by WhatsApp";
      show(status, "ok", `Code sent to ${data.sent_to}${how}, valid ${minutes} minutes. Enter it below.`);
      const form = document.getElementById("verify-form");
      form.hidden = false;
      document.getElementById("verify-code").value = "";
      setError("verify-code", "");
      document.getElementById("verify-code").focus();
    } else {
      show(status, "fail", `Sorry, no code was sent: ${apiDetail(data, `error ${response.status}`)}.`);
    }
  } catch (err) {
    show(status, "fail", "We could not reach the server. Check your connection and try again.");
  } finally {
    button.disabled = false;
  }
}

async function confirmVerification(event) {
  event.preventDefault();
  const input = document.getElementById("verify-code");
  const status = document.getElementById("verify-status");
  const code = input.value.replace(/\s/g, "");
  if (!/^\d{6}$/.test(code)) {
    setError("verify-code", "Enter the 6 digits of the code.");
    input.focus();
    return;
  }
  setError("verify-code", "");
  if (!openTicket || !pendingKind) return;
  const button = document.getElementById("verify-confirm");
  button.disabled = true;
  try {
    const response = await fetch("/support/verify/confirm", {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ ticket_id: openTicket, kind: pendingKind, code }),
    });
    const data = await response.json().catch(() => ({}));
    if (response.ok) {
      show(status, "ok", `Thank you: your ${KIND_NAME[pendingKind]} is confirmed.`);
      pendingKind = null;
      document.getElementById("verify-form").hidden = true;
      await loadTicket(openTicket, { quiet: true });
    } else {
      const detail = apiDetail(data, `error ${response.status}`);
      if (response.status === 400) setError("verify-code", "That code is wrong or has expired.");
      show(status, "fail", `Not confirmed: ${detail}.`);
    }
  } catch (err) {
    show(status, "fail", "We could not reach the server. Check your connection and try again.");
  } finally {
    button.disabled = false;
  }
}

async function loadTicket(id, { quiet = false } = {}) {
  const out = document.getElementById("ticket-status");
  if (!quiet) show(out, "", "Looking up your request…");
  const response = await fetch(`/support/ticket/${encodeURIComponent(id)}`);
  if (response.status === 404) {
    show(out, "fail", "We could not find that ticket number.");
    stopRefresh();
    return;
  }
  if (!response.ok) {
    if (!quiet) show(out, "fail", `Sorry, the status is unavailable (${response.status}).`);
    return;
  }
  renderTicket(await response.json());
}

function stopRefresh() {
  openTicket = null;
  if (refreshTimer) clearInterval(refreshTimer);
  refreshTimer = null;
  document.getElementById("reply-section").hidden = true;
  document.getElementById("verify-section").hidden = true;
  document.getElementById("verify-form").hidden = true;
  document.getElementById("verify-status").textContent = "";
  shownContacts = "";
  pendingKind = null;
}

function startRefresh(id) {
  // No stopRefresh(): it would hide the sections the first load just rendered.
  if (refreshTimer) clearInterval(refreshTimer);
  if (openTicket !== id) {
    pendingKind = null;
    document.getElementById("verify-form").hidden = true;
    document.getElementById("verify-status").textContent = "";
  }
  openTicket = id;
  replyId = newReplyId();
  // The id goes in the fragment, which browsers never send to the server (no logs, no referrers).
  history.replaceState(null, "", `#${id}`);
  refreshTimer = setInterval(() => {
    if (openTicket && document.visibilityState === "visible") {
      loadTicket(openTicket, { quiet: true }).catch(() => {});
    }
  }, REFRESH_MS);
}

async function checkStatus(event) {
  if (event) event.preventDefault();
  const input = document.getElementById("ticket-id");
  const out = document.getElementById("ticket-status");
  const id = input.value.trim();
  if (!/^T-[0-9A-Za-z-]{8,60}$/.test(id)) {
    setError("ticket-id", "Ticket numbers look like T-1A2B3C4D5E6F7A8B9C0D1E2F3A4B5C6D.");
    input.focus();
    return;
  }
  setError("ticket-id", "");
  const button = document.getElementById("check");
  button.disabled = true;
  try {
    await loadTicket(id);
    if (document.getElementById("ticket-state")) startRefresh(id);
  } catch (err) {
    show(out, "fail", "We could not reach the server. Check your connection and try again.");
  } finally {
    button.disabled = false;
  }
}

async function sendReply(event) {
  event.preventDefault();
  const box = document.getElementById("reply-message");
  const status = document.getElementById("reply-status");
  const text = box.value.trim();
  if (!text) { setError("reply-message", "Please write your reply."); box.focus(); return; }
  setError("reply-message", "");
  if (!openTicket) return;
  const button = document.getElementById("reply-send");
  button.disabled = true;
  show(status, "", "Sending…");
  try {
    const response = await fetch(`/support/ticket/${encodeURIComponent(openTicket)}/reply`, {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ message: text, reply_id: replyId }),
    });
    const data = await response.json().catch(() => ({}));
    if (response.status === 202) {
      show(status, "ok", "Sent. Our answer will appear here.");
      box.value = "";
      replyId = newReplyId();
      await loadTicket(openTicket, { quiet: true });
    } else if (response.status === 422 && Array.isArray(data.detail)) {
      setError("reply-message", data.detail.map((e) => e.msg).join(" "));
      show(status, "fail", "Please correct your reply.");
    } else if (response.status === 409) {
      show(status, "fail", "This ticket is closed. Please send a new request above.");
    } else if (response.status === 429 || response.status === 503) {
      const wait = response.headers.get("Retry-After");
      show(status, "fail", `We are busy right now and your reply was not recorded. Please try again${wait ? ` in ${wait} seconds` : " shortly"}.`);
    } else {
      show(status, "fail", `Sorry, something went wrong (${response.status}). Your reply was not recorded.`);
    }
  } catch (err) {
    show(status, "fail", "We could not reach the server. Your reply was not recorded; try again.");
  } finally {
    button.disabled = false;
  }
}

document.getElementById("support-form").addEventListener("submit", submitRequest);
document.getElementById("status-form").addEventListener("submit", checkStatus);
document.getElementById("reply-form").addEventListener("submit", sendReply);
document.getElementById("verify-form").addEventListener("submit", confirmVerification);
// A link to the page with the ticket in its fragment (/#T-…) opens that ticket.
if (/^#T-[0-9A-Za-z-]{8,60}$/.test(location.hash)) {
  document.getElementById("ticket-id").value = location.hash.slice(1);
  checkStatus();
}
