#pragma once
// The sandbox's web page (GET /): markup and style only. Everything it shows comes from the JSON
// endpoints through its script (page_js.hpp), which renders records as text, never as markup; an
// email's HTML is shown only inside an iframe with an empty sandbox attribute (no scripts, no
// same-origin access). Self-contained: no external fonts, scripts or styles.
#include <string_view>

namespace herald::sandbox::detail {

inline constexpr std::string_view kPageHtml = R"PAGE(<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>herald sandbox</title>
<style>
*{box-sizing:border-box}
body{font:13px/1.4 system-ui,sans-serif;margin:0;color:#1d2330;background:#f6f7f9;display:flex;flex-direction:column;height:100vh}
header{display:flex;align-items:center;gap:12px;padding:8px 14px;background:#1d2330;color:#fff}
header h1{font-size:16px;margin:0}
#live{font-size:12px;padding:2px 8px;border-radius:10px;background:#555}
#live.on{background:#1f8a4c}#live.off{background:#b3261e}
#counts{font-size:12px;opacity:.8;margin-left:auto}
.bar{display:flex;flex-wrap:wrap;gap:8px;padding:8px 14px;background:#fff;border-bottom:1px solid #dde}
.bar input,.bar select,form input,form select{font:inherit;padding:3px 6px;border:1px solid #bbc;border-radius:4px}
button{font:inherit;padding:3px 10px;border:1px solid #889;border-radius:4px;background:#fff;cursor:pointer}
button:hover{background:#eef}
main{display:flex;flex:1;min-height:0}
#listbox{flex:1 1 50%;overflow:auto;background:#fff;border-right:1px solid #dde}
table{border-collapse:collapse;width:100%}
th,td{padding:4px 8px;text-align:left;vertical-align:top;border-bottom:1px solid #eef}
th{position:sticky;top:0;background:#f0f1f5;font-weight:600}
#list tr{cursor:pointer}#list tr:hover{background:#f3f6ff}#list tr.sel{background:#dfe8ff}
#list td.sum{max-width:28em;overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
.st{font-size:11px;padding:1px 6px;border-radius:8px;background:#e4e6eb;white-space:nowrap}
.st.delivered,.st.sent,.st.accepted,.st.processed,.st.open{background:#d7f0df}
.st.undelivered,.st.failed,.st.bounce,.st.dropped{background:#f8d7d4}
.st.deferred,.st.queued{background:#fbeccb}
#detail{flex:1 1 50%;overflow:auto;padding:10px 14px}
#detail h2{font-size:15px;margin:4px 0 8px}
#detail h3{font-size:13px;margin:14px 0 4px;color:#445}
#detail .empty{color:#778}
dl.kv{display:grid;grid-template-columns:max-content 1fr;gap:2px 12px;margin:0}
dl.kv dt{color:#556}dl.kv dd{margin:0;word-break:break-all}
pre{background:#fff;border:1px solid #dde;padding:8px;overflow:auto;max-height:24em;margin:0;white-space:pre-wrap;word-break:break-all}
iframe{width:100%;height:22em;border:1px solid #dde;background:#fff}
.masked{color:#8a5a00}
#controls{border-top:1px solid #dde;background:#fff;padding:0 14px}
#controls summary{cursor:pointer;padding:6px 0;font-weight:600}
#controls form{display:flex;flex-wrap:wrap;gap:8px;align-items:end;margin:6px 0}
#controls label{display:flex;flex-direction:column;font-size:11px;color:#556}
#controls .row{display:flex;gap:24px;flex-wrap:wrap}
#controls .col{flex:1;min-width:22em}
.note{font-size:12px;color:#556}
.err{color:#b3261e}
</style></head>
<body>
<header><h1>herald sandbox</h1><span id="live">connecting</span><span id="counts"></span></header>
<div class="bar">
  <input id="search" type="search" placeholder="search text, subject, recipient, id" size="34" aria-label="search">
  <select id="f-service" aria-label="service"><option value="">every service</option></select>
  <select id="f-status" aria-label="status"><option value="">every status</option></select>
  <input id="f-to" type="search" placeholder="recipient" size="18" aria-label="recipient">
  <label class="note">herald serve <input id="herald-url" type="url" placeholder="http://127.0.0.1:8788" size="24"></label>
  <button id="clear" type="button" title="forget every record (DELETE /_sandbox/messages)">clear</button>
</div>
<main>
  <div id="listbox"><table><thead><tr><th>time</th><th>service</th><th>to</th><th>subject / text</th><th>status</th></tr></thead>
  <tbody id="list"></tbody></table>
  <p id="nothing" class="note" style="padding:8px 14px">Nothing yet: messages appear here as they arrive.</p></div>
  <section id="detail"><p class="empty">Pick a message to see its request, headers and content.</p></section>
</main>
<details id="controls"><summary>faults and callbacks</summary>
<div class="row">
<div class="col">
<form id="faults-form">
  <label>service<input name="service" value="*" size="10" required></label>
  <label>error rate<input name="error_rate" type="number" min="0" max="1" step="0.01" value="0" size="5"></label>
  <label>error status<input name="error_status" type="number" min="100" max="599" value="500" size="5"></label>
  <label>error code<input name="error_code" size="10"></label>
  <label>429 rate<input name="rate_limit_rate" type="number" min="0" max="1" step="0.01" value="0" size="5"></label>
  <label>retry after s<input name="retry_after_s" type="number" min="0" value="1" size="4"></label>
  <label>latency ms<input name="latency_ms" type="number" min="0" value="0" size="6"></label>
  <label>outage for ms<input name="outage_for_ms" type="number" min="0" value="0" size="7"></label>
  <button type="submit">set faults</button><button type="button" id="faults-clear">clear all faults</button>
</form>
<p class="note">In force: <span id="faults-now">none</span> <span id="faults-msg" class="err"></span></p>
</div>
<div class="col">
<form id="callbacks-form">
  <label>service<input name="service" value="*" size="10" required></label>
  <label>enabled<select name="enabled"><option value="true">yes</option><option value="false">no</option></select></label>
  <label>delay ms<input name="delay_ms" type="number" min="0" max="86400000" value="50" size="7"></label>
  <label>url (SendGrid webhook)<input name="url" size="24"></label>
  <button type="submit">set callbacks</button>
</form>
<p class="note">In force: <span id="callbacks-now">defaults (on, 50 ms)</span> <span id="callbacks-msg" class="err"></span></p>
</div>
</div>
</details>
<script src="/_sandbox/page.js"></script>
</body></html>
)PAGE";

}  // namespace herald::sandbox::detail
