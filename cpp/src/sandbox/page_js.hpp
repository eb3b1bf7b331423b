#pragma once
// The sandbox page's script (GET /_sandbox/page.js): the live list (a long poll on
// /_sandbox/messages?after=SEQ), search and filters, the detail view, and the fault and callback
// forms. Records are put in the page with textContent only; an email's HTML goes into an iframe
// with an empty sandbox attribute (srcdoc), so nothing a message carries runs here.
#include <string_view>

namespace herald::sandbox::detail {

inline constexpr std::string_view kPageJs = R"PAGEJS("use strict";
(function () {
const MAX_KEPT = 5000;      // records kept in the page; older ones drop off
const WAIT_MS = 25000;      // how long one poll may wait for a new record
const byId = (id) => document.getElementById(id);
let messages = [];          // oldest first
let lastSeq = 0;
let selected = null;        // seq of the message in the detail view

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v; else e.setAttribute(k, v);
  }
  for (const c of children) if (c !== null && c !== undefined) e.append(c instanceof Node ? c : String(c));
  return e;
}

// ---- what a record is --------------------------------------------------------------------------
function statusOf(m, now) {
  if (!m.timeline || !m.timeline.length) return m.status || "";
  let cur = m.timeline[0];
  for (const s of m.timeline) if (s.at_ms <= now) cur = s;
  return cur.status + (cur.error_code ? " (" + cur.error_code + ")" : "");
}
function header(m, name) {
  return (m.request_headers && m.request_headers[name]) || (m.headers && m.headers[name]) || "";
}
function heraldId(m) {
  const h = header(m, "x-herald-id");
  if (h) return h;
  if (m.body && typeof m.body === "object") {
    if (m.body.id !== undefined && !String(m.service).startsWith("hook:")) return String(m.body.id);
    if (m.body.data && m.body.data.herald_id) return String(m.body.data.herald_id);
    if (m.body.herald_id !== undefined) return String(m.body.herald_id);
  }
  if (m.custom_args && m.custom_args.herald_id) return String(m.custom_args.herald_id);
  return "";
}
function emailHtml(m) {
  if (Array.isArray(m.content)) {
    const part = m.content.find((c) => c && c.type === "text/html");
    if (part) return String(part.value);
  }
  if (m.body && typeof m.body === "object" && typeof m.body.html === "string") return m.body.html;
  return "";
}
function kindOf(m) {
  const s = String(m.service);
  if (s === "fcm" || s === "apns") return "push";
  if (s === "slack" || s.startsWith("hook:")) return "chat";
  if (s === "sendgrid" || emailHtml(m) || (m.to || "").includes("@")) return "email";
  if (s === "twilio" || /^\+?[0-9 ()-]{6,}$/.test(m.to || "")) return "sms";
  return "other";
}
function summary(m) {
  let t = m.subject || "";
  if (m.text) t += (t ? " \u2014 " : "") + m.text;
  if (!t && m.body && typeof m.body === "object") t = JSON.stringify(m.body);
  return t.length > 200 ? t.slice(0, 200) + "\u2026" : t;
}
function clock(ms) {
  const d = new Date(ms);
  return d.toISOString().replace("T", " ").slice(0, 23);
}

// ---- SMS segments: GSM-7 (160 alone, 153 per part) or UCS-2 (70 alone, 67 per part) -------------
const GSM_BASIC = "@\u00a3$\u00a5\u00e8\u00e9\u00f9\u00ec\u00f2\u00c7\n\u00d8\u00f8\r\u00c5\u00e5\u0394_\u03a6\u0393\u039b\u03a9\u03a0\u03a8\u03a3\u0398\u039e\u00c6\u00e6\u00df\u00c9 !\"#\u00a4%&'()*+,-./0123456789:;<=>?\u00a1ABCDEFGHIJKLMNOPQRSTUVWXYZ\u00c4\u00d6\u00d1\u00dc\u00a7\u00bfabcdefghijklmnopqrstuvwxyz\u00e4\u00f6\u00f1\u00fc\u00e0";
const GSM_EXT = "^{}\\[~]|\u20ac\f";
function segments(text) {
  let septets = 0, gsm = true;
  for (const ch of text) {
    if (GSM_BASIC.includes(ch)) septets += 1;
    else if (GSM_EXT.includes(ch)) septets += 2;  // an escape and the character
    else { gsm = false; break; }
  }
  if (gsm) return { encoding: "GSM-7", units: septets, count: septets <= 160 ? 1 : Math.ceil(septets / 153) };
  const units = text.length;  // UTF-16 code units, as UCS-2 counts them
  return { encoding: "UCS-2", units, count: units <= 70 ? 1 : Math.ceil(units / 67) };
}

// ---- filters ----------------------------------------------------------------------------------
function matches(m, now) {
  const svc = byId("f-service").value, st = byId("f-status").value;
  const to = byId("f-to").value.trim().toLowerCase();
  const q = byId("search").value.trim().toLowerCase();
  if (svc && m.service !== svc) return false;
  if (st && statusOf(m, now).split(" ")[0] !== st) return false;
  if (to && !String(m.to || "").toLowerCase().includes(to)) return false;
  if (q) {
    const hay = [m.id, m.to, m.subject, m.text, m.service, heraldId(m), m.path,
                 typeof m.body === "string" ? m.body : JSON.stringify(m.body)].join("\n").toLowerCase();
    if (!hay.includes(q)) return false;
  }
  return true;
}
function addOption(select, value) {
  if (!value || [...select.options].some((o) => o.value === value)) return;
  select.append(el("option", { value }, value));
}

// ---- the list -----------------------------------------------------------------------------------
function row(m, now) {
  const st = statusOf(m, now);
  const tr = el("tr", { "data-seq": m.seq },
    el("td", null, clock(m.received_at_ms)), el("td", null, m.service), el("td", null, m.to || ""),
    el("td", { class: "sum" }, summary(m)),
    el("td", null, st ? el("span", { class: "st " + st.split(" ")[0] }, st) : ""));
  if (m.seq === selected) tr.classList.add("sel");
  tr.addEventListener("click", () => select(m.seq));
  return tr;
}
function render() {
  const now = Date.now();
  const body = byId("list");
  const shown = [];
  for (let i = messages.length - 1; i >= 0 && shown.length < 1000; --i) {
    if (matches(messages[i], now)) shown.push(row(messages[i], now));
  }
  body.replaceChildren(...shown);
  byId("nothing").style.display = shown.length ? "none" : "";
  byId("counts").textContent = shown.length + " shown of " + messages.length + " messages";
}
function add(batch) {
  for (const m of batch) {
    if (m.seq <= lastSeq) continue;
    messages.push(m);
    lastSeq = m.seq;
    addOption(byId("f-service"), m.service);
    for (const s of m.timeline || []) addOption(byId("f-status"), s.status);
    if (!m.timeline && m.status) addOption(byId("f-status"), m.status);
  }
  if (messages.length > MAX_KEPT) messages = messages.slice(messages.length - MAX_KEPT);
}

// ---- the detail view ------------------------------------------------------------------------------
function kv(pairs) {
  const dl = el("dl", { class: "kv" });
  for (const [k, v, cls] of pairs) dl.append(el("dt", null, k), el("dd", cls ? { class: cls } : null, v));
  return dl;
}
function traceLink(id) {
  const base = byId("herald-url").value.trim().replace(/\/+$/, "");
  if (!id) return "(none)";
  if (!base) return el("span", { id: "herald-id" }, id);
  return el("a", { id: "herald-id", href: base + "/dashboard#trace=" + encodeURIComponent(id), target: "_blank",
                   rel: "noopener" }, id);
}
function select(seq) {
  selected = seq;
  for (const tr of byId("list").children) tr.classList.toggle("sel", Number(tr.dataset.seq) === seq);
  const m = messages.find((x) => x.seq === seq);
  const d = byId("detail");
  if (!m) { d.replaceChildren(el("p", { class: "empty" }, "That message is gone.")); return; }
  const now = Date.now();
  const kind = kindOf(m);
  const parts = [el("h2", null, (m.subject || m.text || m.id || "").slice(0, 120) || "(no text)")];
  parts.push(kv([["id", m.id], ["service", m.service], ["kind", kind], ["to", m.to || ""],
                 ["herald id", traceLink(heraldId(m))], ["received", clock(m.received_at_ms) + " UTC"],
                 ["status", statusOf(m, now)],
                 ["request", (m.method || "POST") + " " + m.path + (m.query ? "?" + m.query : "")]]));
  if (m.timeline && m.timeline.length) {
    parts.push(el("h3", null, "status timeline"));
    parts.push(kv(m.timeline.map((s) => [clock(s.at_ms), s.status + (s.error_code ? " (" + s.error_code + ")" : "")])));
  }
  const hdrs = m.request_headers || m.headers || {};
  parts.push(el("h3", null, "headers (credentials masked)"));
  const masked = (v) => v.includes("\u2026 (") ? "masked" : "";
  const hdl = kv(Object.keys(hdrs).sort().map((k) => [k, hdrs[k], masked(hdrs[k])]));
  hdl.id = "headers";
  parts.push(hdl);
  if (kind === "email") {
    const html = emailHtml(m);
    if (html) {
      parts.push(el("h3", null, "HTML (rendered in a sandboxed frame: no scripts)"));
      const frame = el("iframe", { sandbox: "", id: "email-frame", title: "email HTML", referrerpolicy: "no-referrer" });
      frame.srcdoc = html;
      parts.push(frame);
    }
    if (m.text) { parts.push(el("h3", null, "text")); parts.push(el("pre", null, m.text)); }
  } else if (kind === "sms") {
    const text = m.text || "";
    const seg = segments(text);
    parts.push(el("h3", null, "SMS text"));
    parts.push(el("pre", { id: "sms-text" }, text));
    parts.push(el("p", { id: "segments" }, seg.count + (seg.count === 1 ? " segment" : " segments") + ", " +
      seg.encoding + " (" + seg.units + (seg.encoding === "GSM-7" ? " septets" : " code units") + "; " +
      (seg.encoding === "GSM-7" ? "160 alone, 153 per part" : "70 alone, 67 per part") + ")"));
  } else if (kind === "push") {
    parts.push(el("h3", null, "push payload"));
    parts.push(el("pre", { id: "push-payload" }, JSON.stringify(m.body, null, 2)));
  }
  parts.push(el("h3", null, "request body"));
  parts.push(el("pre", { id: "raw-body" }, typeof m.body === "string" ? m.body : JSON.stringify(m.body, null, 2)));
  d.replaceChildren(...parts);
}

// herald's ids pass 2^53, where a JSON number loses digits in JavaScript: such integers are kept
// as their source text (JSON.parse's reviver context, where the browser has it).
function parseExact(text) {
  return JSON.parse(text, (key, value, ctx) =>
    typeof value === "number" && !Number.isSafeInteger(value) && Number.isInteger(value) && ctx && ctx.source
      ? ctx.source : value);
}

// ---- live updates: one long poll at a time --------------------------------------------------------
function setLive(on, text) {
  const e = byId("live");
  e.className = on ? "on" : "off";
  e.textContent = text;
}
async function poll() {
  let wait = 0;  // the first answer at once: it says the page is live
  for (;;) {
    try {
      const r = await fetch("/_sandbox/messages?after=" + lastSeq + "&wait_ms=" + wait + "&limit=" + MAX_KEPT, { cache: "no-store" });
      if (!r.ok) throw new Error("HTTP " + r.status);
      const j = parseExact(await r.text());
      if (j.last_seq < lastSeq) { messages = []; lastSeq = 0; }  // the sandbox restarted
      setLive(true, "live");
      if (j.messages.length) { add(j.messages); render(); }
      lastSeq = Math.max(lastSeq, j.last_seq);  // records past the limit are skipped, not asked for again
      wait = WAIT_MS;
    } catch (e) {
      setLive(false, "reconnecting");
      await new Promise((ok) => setTimeout(ok, 1000));
    }
  }
}

// ---- faults and callbacks ---------------------------------------------------------------------------
async function api(method, path, body) {
  const r = await fetch(path, { method, headers: body ? { "Content-Type": "application/json" } : {},
                                body: body ? JSON.stringify(body) : undefined });
  const j = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error((j.error && (j.error.message || j.error.code)) || "HTTP " + r.status);
  return j;
}
function describe(obj) {
  const keys = Object.keys(obj);
  return keys.length ? keys.map((k) => k + ": " + JSON.stringify(obj[k])).join("; ") : "none";
}
async function refreshControls() {
  try {
    byId("faults-now").textContent = describe(await api("GET", "/_sandbox/faults"));
    const cb = await api("GET", "/_sandbox/callbacks");
    byId("callbacks-now").textContent = Object.keys(cb).length ? describe(cb) : "defaults (on, 50 ms)";
  } catch (e) { byId("faults-msg").textContent = e.message; }
}
function formFaults(form) {
  const f = {};
  for (const k of ["error_rate", "rate_limit_rate"]) f[k] = Number(form.elements[k].value || 0);
  for (const k of ["error_status", "retry_after_s", "latency_ms"]) f[k] = Math.trunc(Number(form.elements[k].value || 0));
  if (form.elements.error_code.value) f.error_code = form.elements.error_code.value;
  const outage = Math.trunc(Number(form.elements.outage_for_ms.value || 0));
  if (outage > 0) f.outage_for_ms = outage;
  return f;
}
function wireControls() {
  const ff = byId("faults-form"), cf = byId("callbacks-form");
  ff.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    byId("faults-msg").textContent = "";
    try {
      await api("PUT", "/_sandbox/faults/" + encodeURIComponent(ff.elements.service.value), formFaults(ff));
    } catch (e) { byId("faults-msg").textContent = e.message; }
    refreshControls();
  });
  byId("faults-clear").addEventListener("click", async () => {
    try { await api("DELETE", "/_sandbox/faults"); } catch (e) { byId("faults-msg").textContent = e.message; }
    refreshControls();
  });
  cf.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    byId("callbacks-msg").textContent = "";
    try {
      await api("PUT", "/_sandbox/callbacks/" + encodeURIComponent(cf.elements.service.value), {
        enabled: cf.elements.enabled.value === "true",
        delay_ms: Math.trunc(Number(cf.elements.delay_ms.value || 0)),
        url: cf.elements.url.value });
    } catch (e) { byId("callbacks-msg").textContent = e.message; }
    refreshControls();
  });
  byId("controls").addEventListener("toggle", refreshControls);
}

// ---- start ---------------------------------------------------------------------------------------
function start() {
  // herald serve's URL: ?herald=URL, else what was typed last time.
  const given = new URLSearchParams(location.search).get("herald");
  const urlBox = byId("herald-url");
  urlBox.value = given || localStorage.getItem("herald-sandbox.herald-url") || "";
  urlBox.addEventListener("change", () => {
    localStorage.setItem("herald-sandbox.herald-url", urlBox.value.trim());
    if (selected !== null) select(selected);
  });
  for (const id of ["search", "f-to"]) byId(id).addEventListener("input", render);
  for (const id of ["f-service", "f-status"]) byId(id).addEventListener("change", render);
  byId("clear").addEventListener("click", async () => {
    await api("DELETE", "/_sandbox/messages");
    messages = [];
    selected = null;
    byId("detail").replaceChildren(el("p", { class: "empty" }, "Cleared."));
    render();
  });
  wireControls();
  // Statuses move on by their timelines without asking the sandbox again: the cells change in
  // place (rows are rebuilt only when a status filter may now pick others).
  setInterval(() => {
    const now = Date.now();
    if (!messages.some((m) => m.timeline && m.timeline[m.timeline.length - 1].at_ms > now - 1500)) return;
    if (byId("f-status").value) { render(); return; }
    const bySeq = new Map(messages.map((m) => [m.seq, m]));
    for (const tr of byId("list").children) {
      const m = bySeq.get(Number(tr.dataset.seq));
      const cell = tr.lastElementChild;
      if (!m || !m.timeline || !cell) continue;
      const st = statusOf(m, now);
      if (cell.textContent !== st) cell.replaceChildren(el("span", { class: "st " + st.split(" ")[0] }, st));
    }
  }, 1000);
  render();
  poll();
}
start();
})();
)PAGEJS";

}  // namespace herald::sandbox::detail
