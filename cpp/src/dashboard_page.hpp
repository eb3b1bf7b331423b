#pragma once
// `herald serve`'s dashboard (GET /dashboard): one self-contained page (markup, style, script; no
// external files). It asks for an API key, keeps it in the tab's sessionStorage only, and polls
// GET /v1/dashboard with it: queue depth per lane, providers' circuit breakers, counters, recent
// dead letters, and the provider answers per minute of the last hour as the engine counted them
// (drawn for all providers or one). The trace search reads GET /v1/notifications/{id} and its /trace, or a recipient's
// notifications from GET /v1/notifications?recipient=. Everything from
// the server is put in the page as text (textContent), never as markup.
#include <string_view>

namespace herald::api {

inline constexpr std::string_view kDashboardPage = R"DASH(<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>herald dashboard</title>
<style>
*{box-sizing:border-box}
body{font:13px/1.4 system-ui,sans-serif;margin:0;color:#1d2330;background:#f6f7f9}
header{display:flex;align-items:center;gap:12px;padding:8px 14px;background:#1d2330;color:#fff}
header h1{font-size:16px;margin:0}
#conn{font-size:12px;padding:2px 8px;border-radius:10px;background:#555}
#conn.on{background:#1f8a4c}#conn.off{background:#b3261e}
header form{margin-left:auto;display:flex;gap:6px;align-items:center}
input,button{font:inherit;padding:3px 8px;border:1px solid #889;border-radius:4px}
button{background:#fff;cursor:pointer}
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(330px,1fr));gap:12px;padding:12px 14px}
.card{background:#fff;border:1px solid #dde;border-radius:6px;padding:10px 12px;min-width:0}
.card h2{font-size:14px;margin:0 0 8px}
.wide{grid-column:1/-1}
table{border-collapse:collapse;width:100%}
th,td{padding:3px 8px;text-align:left;border-bottom:1px solid #eef;vertical-align:top}
th{background:#f0f1f5;font-weight:600}
td.n{text-align:right;font-variant-numeric:tabular-nums}
.big{font-size:22px;font-weight:600}
.ok{color:#1f8a4c}.bad{color:#b3261e}.muted{color:#778}
.kpis{display:flex;gap:18px;flex-wrap:wrap}
.kpis div{display:flex;flex-direction:column}
.kpis span:first-child{font-size:11px;color:#556}
svg{width:100%;height:120px;background:#fafbfc;border:1px solid #eef}
.legend span{display:inline-block;margin-right:12px;font-size:11px}
.sw{display:inline-block;width:10px;height:10px;margin-right:4px;vertical-align:middle}
a{color:#2450b3;cursor:pointer}
.warn{color:#a36b00}
.chart{display:grid;grid-template-columns:auto 1fr;gap:2px 6px;align-items:center}
.ylabel{writing-mode:vertical-rl;transform:rotate(180deg);font-size:11px;color:#556}
.xaxis{grid-column:2;display:flex;justify-content:space-between;font-size:11px;color:#556}
.xlabel{grid-column:2;text-align:center;font-size:11px;color:#556}
</style></head>
<body>
<header><h1>herald dashboard</h1><span id="conn">no key</span>
<form id="key-form"><input id="api-key" type="password" placeholder="API key" autocomplete="off" size="22" aria-label="API key">
<button type="submit">use key</button></form></header>
<p id="message" class="muted" style="padding:0 14px"></p>
<div class="grid">
<section class="card"><h2>health</h2><div id="health" class="kpis"></div></section>
<section class="card"><h2>queue depth per lane</h2>
<table><thead><tr><th>lane</th><th>due, in the lane</th><th>waiting for a provider</th></tr></thead><tbody id="queues"></tbody></table>
<p class="muted">scheduled for later: <span id="scheduled">-</span>; active: <span id="active">-</span>; in flight: <span id="in-flight">-</span></p></section>
<section class="card wide"><h2>providers</h2>
<table><thead><tr><th>provider</th><th>in flight</th><th>circuit</th><th>failure rate</th><th>last hour: accepted</th><th>failed</th></tr></thead><tbody id="providers"></tbody></table>
<p class="muted">circuit: the breaker's state (open: traffic goes to the next provider; half open: one probe);
failure rate: of the answers in the breaker's window.</p></section>
<section class="card wide"><h2>provider answers per minute, last hour</h2>
<p><label>show <select id="chart-provider" aria-label="provider shown"><option value="">all providers</option></select></label>
<span class="muted">counted by the engine since it started</span></p>
<div class="chart"><span class="ylabel">answers per minute (max <span id="chart-max">0</span>)</span>
<svg id="chart" viewBox="0 0 600 120" preserveAspectRatio="none" role="img" aria-label="provider answers per minute, last hour"></svg>
<div class="xaxis"><span>60 min ago</span><span>45</span><span>30</span><span>15</span><span>now</span></div>
<div class="xlabel">time (minutes, UTC <span id="chart-from"></span> to <span id="chart-to"></span>)</div></div>
<div class="legend"><span><i class="sw" style="background:#2f7dd1"></i>accepted by the provider</span>
<span><i class="sw" style="background:#c8372d"></i>failed (refused, error, timeout)</span></div>
<div id="totals" class="kpis"></div></section>
<section class="card wide"><h2>trace search</h2>
<form id="trace-form"><input id="trace-q" placeholder="notification id or recipient id" size="44" aria-label="trace search">
<button type="submit">find</button></form><div id="trace-result"></div></section>
<section class="card wide"><h2>recent dead letters</h2>
<table><thead><tr><th>id</th><th>type</th><th>recipient</th><th>provider</th><th>attempts</th><th>last error</th><th>updated (UTC)</th></tr></thead>
<tbody id="dead-letters"></tbody></table><p id="no-dead" class="muted">none</p></section>
</div>
<script>
"use strict";
(function () {
const $ = (id) => document.getElementById(id);
const POLL_MS = 2000;
const SERIES = [["accepted", "#2f7dd1"], ["failed", "#c8372d"]];
let key = sessionStorage.getItem("herald-dashboard.key") || "";
let deadLetters = [];
let latest = null;            // the last answer, to redraw when another provider is chosen

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) if (k === "class") e.className = v; else e.setAttribute(k, v);
  for (const c of children) if (c !== null && c !== undefined) e.append(c instanceof Node ? c : String(c));
  return e;
}
function when(s) { return s ? new Date(s * 1000).toISOString().replace("T", " ").slice(0, 19) : ""; }
async function get(path) {
  const r = await fetch(path, { headers: { Authorization: "Bearer " + key }, cache: "no-store" });
  const j = await r.json().catch(() => ({}));
  if (!r.ok) {
    const err = new Error((j.error && j.error.message) || "HTTP " + r.status);
    err.status = r.status;
    throw err;
  }
  return j;
}
function kpis(box, pairs) {
  box.replaceChildren(...pairs.map(([label, value, cls]) =>
    el("div", null, el("span", null, label), el("span", { class: "big " + (cls || "") }, value))));
}

// ---- rates: the engine's per-minute counts of provider answers, last hour ---------------------------
function hhmm(sec) { return new Date(sec * 1000).toISOString().slice(11, 16); }
function drawChart(d) {
  const chosen = $("chart-provider").value;
  const p = chosen && d.providers.find((x) => x.name === chosen);
  const series = p ? p.last_hour : d.last_hour;
  const n = series.accepted.length;
  const svg = $("chart");
  const ns = "http://www.w3.org/2000/svg";
  let max = 1;
  for (const [k] of SERIES) for (const v of series[k]) max = Math.max(max, v);
  const parts = [];
  const slot = 600 / n, bar = slot / SERIES.length;
  for (let i = 0; i < n; ++i) {
    SERIES.forEach(([k, color], j) => {
      const v = series[k][i];
      if (!v) return;
      const h = (v / max) * 110;
      const r = document.createElementNS(ns, "rect");
      r.setAttribute("x", String(i * slot + j * bar));
      r.setAttribute("y", String(118 - h));
      r.setAttribute("width", String(bar - 0.5));
      r.setAttribute("height", String(h));
      r.setAttribute("fill", color);
      r.setAttribute("data-minute", String(i));
      r.setAttribute("data-series", k);
      const t = document.createElementNS(ns, "title");
      t.textContent = k + ": " + v + " at " + hhmm(d.last_hour.start + i * d.last_hour.bucket_seconds) + " UTC";
      r.append(t);
      parts.push(r);
    });
  }
  svg.replaceChildren(...parts);
  $("chart-max").textContent = max;
  $("chart-from").textContent = hhmm(d.last_hour.start);
  $("chart-to").textContent = hhmm(d.last_hour.start + n * d.last_hour.bucket_seconds);
  const sum = (xs) => xs.reduce((a, b) => a + b, 0);
  const acc = sum(series.accepted), fail = sum(series.failed);
  const rate = acc + fail ? (100 * fail / (acc + fail)).toFixed(1) + " %" : "-";
  kpis($("totals"), [["accepted this minute", series.accepted[n - 1]],
                     ["failed this minute", series.failed[n - 1], series.failed[n - 1] ? "bad" : ""],
                     ["accepted, last hour", acc], ["failed, last hour", fail, fail ? "bad" : ""],
                     ["failure rate, last hour", rate, fail ? "bad" : ""]]);
}
function circuitCell(c) {
  if (!c) return el("td", { class: "muted" }, "unknown");
  const cls = c.state === "open" ? "bad" : c.state === "half_open" ? "warn" : "ok";
  const probe = c.state === "open" && c.half_open_at ? " (probe at " + when(c.half_open_at).slice(11) + ")" : "";
  return el("td", { class: cls, "data-circuit": c.state }, c.state.replace("_", " ") + probe);
}

// ---- one poll ----------------------------------------------------------------------------------
const shown = {};  // what each table shows now, as JSON: unchanged data leaves the rows alone
function replaceIfChanged(id, data, build) {
  const text = JSON.stringify(data);
  if (shown[id] === text) return;
  shown[id] = text;
  $(id).replaceChildren(...build());
}
function show(d) {
  const h = d.health;
  const healthy = !h.closing && !h.store_degraded;
  kpis($("health"), [["engine", healthy ? "ok" : h.closing ? "closing" : "store degraded", healthy ? "ok" : "bad"],
                     ["store held batches", h.store_held_batches], ["store write faults", h.store_write_faults],
                     ["received", d.stats.received], ["dead-lettered", d.stats.dead_lettered]]);
  if (h.store_error) $("health").append(el("div", { class: "bad" }, h.store_error));
  replaceIfChanged("queues", d.queues, () => d.queues.map((q) =>
    el("tr", { "data-lane": q.lane }, el("td", null, q.lane), el("td", { class: "n" }, q.ready), el("td", { class: "n" }, q.waiting))));
  $("scheduled").textContent = d.scheduled;
  $("active").textContent = d.stats.active;
  $("in-flight").textContent = d.stats.in_flight;
  const sum = (xs) => xs.reduce((a, b) => a + b, 0);
  replaceIfChanged("providers", d.providers, () => d.providers.map((p) =>
    el("tr", { "data-provider": p.name }, el("td", null, p.name), el("td", { class: "n" }, p.in_flight), circuitCell(p.circuit),
       el("td", { class: "n" }, p.circuit ? (100 * p.circuit.failure_rate).toFixed(1) + " % of " + p.circuit.attempts + " answers" : ""),
       el("td", { class: "n" }, sum(p.last_hour.accepted)), el("td", { class: "n" }, sum(p.last_hour.failed)))));
  const picker = $("chart-provider");
  const names = d.providers.map((p) => p.name);
  if (JSON.stringify(names) !== JSON.stringify([...picker.options].slice(1).map((o) => o.value))) {
    const chosen = picker.value;
    picker.replaceChildren(el("option", { value: "" }, "all providers"), ...names.map((n) => el("option", { value: n }, n)));
    picker.value = names.includes(chosen) ? chosen : "";
  }
  deadLetters = d.dead_letters;
  replaceIfChanged("dead-letters", deadLetters, () => deadLetters.map((n) => {
    const a = el("a", { "data-id": n.id }, n.id);
    a.addEventListener("click", () => { $("trace-q").value = n.id; trace(n.id); });
    return el("tr", null, el("td", null, a), el("td", null, n.type), el("td", null, n.recipient_id),
              el("td", null, n.provider || ""), el("td", { class: "n" }, n.attempts), el("td", null, n.last_error || ""),
              el("td", null, when(n.updated_at)));
  }));
  $("no-dead").style.display = deadLetters.length ? "none" : "";
  latest = d;
  drawChart(d);
}
async function poll() {
  if (!key) { $("conn").className = "off"; $("conn").textContent = "no key"; return; }
  try {
    show(await get("/v1/dashboard?limit=20"));
    $("conn").className = "on";
    $("conn").textContent = "live";
    $("message").textContent = "";
  } catch (e) {
    $("conn").className = "off";
    $("conn").textContent = e.status === 401 || e.status === 403 ? "key refused" : "unreachable";
    $("message").textContent = e.message;
  }
}

// ---- trace search ---------------------------------------------------------------------------------
async function trace(q) {
  const box = $("trace-result");
  q = String(q).trim();
  if (!q) return;
  if (!/^[0-9]+$/.test(q)) {
    // Not an id: that recipient's notifications, newest first; one found is traced at once.
    let hits;
    try {
      hits = (await get("/v1/notifications?limit=20&recipient=" + encodeURIComponent(q))).notifications;
    } catch (e) { box.replaceChildren(el("p", { class: "bad" }, e.message)); return; }
    if (!hits.length) { box.replaceChildren(el("p", { class: "muted" }, "No notification for recipient '" + q + "'.")); return; }
    if (hits.length === 1) return trace(hits[0].id);
    box.replaceChildren(el("p", { id: "recipient-hits" }, hits.length + " notifications for '" + q + "', newest first: "),
      el("table", null, el("tbody", null, ...hits.map((n) => {
        const a = el("a", { "data-id": n.id }, n.id);
        a.addEventListener("click", () => { $("trace-q").value = n.id; trace(n.id); });
        return el("tr", null, el("td", null, a), el("td", null, n.type), el("td", null, n.state), el("td", null, when(n.created_at)));
      }))));
    return;
  }
  try {
    const [st, tr] = await Promise.all([get("/v1/notifications/" + q), get("/v1/notifications/" + q + "/trace")]);
    const rows = tr.events.map((e) => el("tr", null, el("td", null, when(e.at)), el("td", null, e.event),
      el("td", { class: "n" }, e.attempt), el("td", null, e.provider || ""),
      el("td", { class: "n" }, e.http_status === null ? "" : e.http_status),
      el("td", { class: "n" }, e.latency_ms === null ? "" : e.latency_ms.toFixed(1)), el("td", null, e.detail || "")));
    box.replaceChildren(
      el("p", { id: "trace-summary" }, "notification " + st.id + ": " + st.state + ", type " + st.type + ", recipient " +
         st.recipient_id + (st.provider ? ", provider " + st.provider : "") + (st.last_error ? ", last error: " + st.last_error : "")),
      el("table", { id: "trace-events" }, el("thead", null, el("tr", null, ...["at (UTC)", "event", "attempt", "provider", "HTTP", "ms", "detail"]
        .map((h) => el("th", null, h)))), el("tbody", null, ...rows)));
  } catch (e) {
    box.replaceChildren(el("p", { class: "bad" }, e.status === 404 ? "No notification " + q + "." : e.message));
  }
}

$("key-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  key = $("api-key").value.trim();
  sessionStorage.setItem("herald-dashboard.key", key);
  $("api-key").value = "";
  poll();
});
$("chart-provider").addEventListener("change", () => { if (latest) drawChart(latest); });
$("trace-form").addEventListener("submit", (ev) => { ev.preventDefault(); trace($("trace-q").value); });
function fromHash() {
  const m = /trace=([^&]+)/.exec(location.hash);
  if (m && key) { $("trace-q").value = decodeURIComponent(m[1]); trace($("trace-q").value); }
}
window.addEventListener("hashchange", fromHash);
poll().then(fromHash);
setInterval(poll, POLL_MS);
})();
</script>
</body></html>
)DASH";

}  // namespace herald::api
