// The sandbox's own surface: /_sandbox/* (records, stats, faults, callbacks, settings, keys) and
// the web page at GET /.
#include <cstdio>
#include <ctime>

#include "herald/crypto.hpp"
#include "routes.hpp"

namespace herald::sandbox::detail {

using json = nlohmann::json;

namespace {

constexpr std::size_t kPageRows = 200;

/// "2024-06-04 10:00:00.123" in UTC.
std::string clock_text(std::int64_t ms) {
  const std::time_t t = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[48];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02d %02d:%02d:%02d.%03d", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<int>(ms % 1000));
  return buf;
}

ServerResponse page(const State& state) {
  const std::int64_t now = epoch_ms();
  const std::vector<Record> rows = state.latest(kPageRows);
  std::string html;
  html.reserve(2048 + rows.size() * 200);
  html +=
      "<!doctype html>\n<html><head><meta charset=\"utf-8\">"
      "<meta http-equiv=\"refresh\" content=\"2\"><title>herald sandbox</title>"
      "<style>body{font:14px sans-serif;margin:1em}table{border-collapse:collapse;width:100%}"
      "td,th{border-bottom:1px solid #ddd;padding:4px 8px;text-align:left;vertical-align:top}"
      "th{background:#f4f4f4}</style></head><body>\n<h1>herald sandbox</h1>\n<p>";
  html += std::to_string(rows.size());
  html += " most recent messages, newest first. JSON: <a href=\"/_sandbox/messages\">/_sandbox/messages</a></p>\n";
  html += "<table><tr><th>time (UTC)</th><th>service</th><th>to</th><th>subject / text</th><th>status</th></tr>\n";
  for (const Record& r : rows) {
    std::string summary = r.subject;
    if (!r.text.empty()) {
      if (!summary.empty()) summary += " \xe2\x80\x94 ";
      summary += r.text.size() > 200 ? r.text.substr(0, 200) + "..." : r.text;
    }
    const Step* s = r.step_at(now);
    std::string status = s ? s->status : "";
    if (s && !s->error_code.empty()) status += " (" + s->error_code + ")";
    html += "<tr><td>" + clock_text(r.received_at_ms) + "</td><td>" + html_escape(r.service) + "</td><td>" +
            html_escape(r.to) + "</td><td>" + html_escape(summary) + "</td><td>" + html_escape(status) +
            "</td></tr>\n";
  }
  html += "</table>\n</body></html>\n";
  return text_response(200, std::move(html), "text/html; charset=utf-8");
}

std::optional<json> parse_object(const std::string& body) {
  json j = json::parse(body, nullptr, false);
  if (!j.is_object()) return std::nullopt;
  return j;
}

ServerResponse put_callbacks(State& state, const std::string& service, const std::string& body) {
  const auto j = parse_object(body);
  if (!j) return herald_error(400, "bad_json", "callbacks: body must be a JSON object");
  CallbackSettings s = state.callbacks(service);
  for (auto it = j->begin(); it != j->end(); ++it) {
    const json& v = it.value();
    if (it.key() == "enabled") {
      if (!v.is_boolean()) return herald_error(400, "invalid_callbacks", "callbacks.enabled: must be true or false");
      s.enabled = v.get<bool>();
    } else if (it.key() == "delay_ms") {
      if (!v.is_number_integer() || v.get<std::int64_t>() < 0 || v.get<std::int64_t>() > 86'400'000) {
        return herald_error(400, "invalid_callbacks", "callbacks.delay_ms: must be an integer between 0 and 86400000");
      }
      s.delay = std::chrono::milliseconds(v.get<std::int64_t>());
    } else if (it.key() == "url") {
      if (!v.is_string()) return herald_error(400, "invalid_callbacks", "callbacks.url: must be a string");
      s.url = v.get<std::string>();
    } else {
      return herald_error(400, "invalid_callbacks", "callbacks." + it.key() + ": unknown key (known: enabled, delay_ms, url)");
    }
  }
  state.set_callbacks(service, s);
  return json_response(200, dump(json{{"service", service},
                                      {"callbacks", {{"enabled", s.enabled}, {"delay_ms", s.delay.count()}, {"url", s.url}}}}));
}

ServerResponse put_settings(State& state, const std::string& service, const std::string& body) {
  const auto j = parse_object(body);
  if (!j) return herald_error(400, "bad_json", "settings: body must be a JSON object");
  if (service == "fcm") {
    for (auto it = j->begin(); it != j->end(); ++it) {
      if (it.key() != "token_ttl_s") return herald_error(400, "invalid_settings", "settings.fcm." + it.key() + ": unknown key");
      if (!it->is_number_integer() || it->get<std::int64_t>() < 0) {
        return herald_error(400, "invalid_settings", "settings.fcm.token_ttl_s: must be an integer >= 0");
      }
      state.set_fcm_token_ttl(it->get<std::int64_t>());
    }
  } else if (service == "slack") {
    const json cur = state.settings_json()["slack"];
    double rate = cur["rate_per_s"].get<double>();
    double burst = cur["burst"].get<double>();
    for (auto it = j->begin(); it != j->end(); ++it) {
      if (it.key() != "rate_per_s" && it.key() != "burst") {
        return herald_error(400, "invalid_settings", "settings.slack." + it.key() + ": unknown key");
      }
      if (!it->is_number() || !(it->get<double>() > 0.0)) {
        return herald_error(400, "invalid_settings", "settings.slack." + it.key() + ": must be a number > 0");
      }
      (it.key() == "rate_per_s" ? rate : burst) = it->get<double>();
    }
    state.set_slack_rate(rate, burst);
  } else {
    return herald_error(404, "not_found", "no settings for '" + service + "' (known: fcm, slack)");
  }
  return json_response(200, dump(state.settings_json()));
}

}  // namespace

ServerResponse handle_control(State& state, const ServerRequest& req) {
  const std::string_view path = req.path;
  const std::string& method = req.method;
  if (path == "/" || path == "/index.html") {
    if (method != "GET") return method_not_allowed("GET");
    return page(state);
  }
  if (path == "/_sandbox/messages") {
    if (method == "GET") {
      auto service = query_param(req.query, "service");
      if (!service) service = query_param(req.query, "provider");
      return json_response(200, dump(state.messages(service.value_or(std::string{}))));
    }
    if (method == "DELETE") {
      state.clear();
      return json_response(200, R"({"cleared":true})");
    }
    return method_not_allowed("GET, DELETE");
  }
  if (path == "/_sandbox/stats") {
    if (method != "GET") return method_not_allowed("GET");
    return json_response(200, dump(state.stats()));
  }
  if (path == "/_sandbox/health") {
    if (method != "GET") return method_not_allowed("GET");
    return json_response(200, R"({"ok":true})");
  }
  if (path == "/_sandbox/keys") {
    if (method != "GET") return method_not_allowed("GET");
    return json_response(200, dump(json{{"sendgrid_verification_key", state.sendgrid_public_key()},
                                        {"signing_secret", state.signing_secret()}}));
  }
  if (path == "/_sandbox/faults") {
    if (method == "GET") return json_response(200, dump(state.faults_json()));
    if (method == "DELETE") {
      state.clear_faults();
      return json_response(200, R"({"cleared":true})");
    }
    return method_not_allowed("GET, DELETE");
  }
  if (path == "/_sandbox/callbacks") {
    if (method != "GET") return method_not_allowed("GET");
    return json_response(200, dump(state.callbacks_json()));
  }
  if (path == "/_sandbox/settings") {
    if (method != "GET") return method_not_allowed("GET");
    return json_response(200, dump(state.settings_json()));
  }
  constexpr std::string_view kFaults = "/_sandbox/faults/";
  if (starts_with(path, kFaults) && path.size() > kFaults.size()) {
    const std::string service = crypto::percent_decode(path.substr(kFaults.size()), false);
    if (method == "PUT") {
      const json body = json::parse(req.body, nullptr, false);
      if (body.is_discarded()) return herald_error(400, "bad_json", "faults: body is not valid JSON");
      try {
        const Faults f = Faults::from_json(body);
        state.set_faults(service, f);
        return json_response(200, dump(json{{"provider", service}, {"faults", f.to_json()}}));
      } catch (const std::invalid_argument& e) {
        return herald_error(400, "invalid_faults", e.what());
      }
    }
    if (method == "GET") {
      const json all = state.faults_json();
      if (auto it = all.find(service); it != all.end()) return json_response(200, dump(*it));
      return herald_error(404, "not_found", "no faults set for '" + service + "'");
    }
    if (method == "DELETE") {
      const bool erased = state.erase_faults(service);
      return json_response(200, dump(json{{"provider", service}, {"cleared", erased}}));
    }
    return method_not_allowed("PUT, GET, DELETE");
  }
  constexpr std::string_view kCallbacks = "/_sandbox/callbacks/";
  if (starts_with(path, kCallbacks) && path.size() > kCallbacks.size()) {
    const std::string service = crypto::percent_decode(path.substr(kCallbacks.size()), false);
    if (method == "PUT") return put_callbacks(state, service, req.body);
    if (method == "GET") {
      const CallbackSettings s = state.callbacks(service);
      return json_response(200, dump(json{{"enabled", s.enabled}, {"delay_ms", s.delay.count()}, {"url", s.url}}));
    }
    return method_not_allowed("PUT, GET");
  }
  constexpr std::string_view kSettings = "/_sandbox/settings/";
  if (starts_with(path, kSettings) && path.size() > kSettings.size()) {
    if (method != "PUT") return method_not_allowed("PUT");
    return put_settings(state, crypto::percent_decode(path.substr(kSettings.size()), false), req.body);
  }
  return herald_error(404, "not_found", "no such path: " + req.path);
}

}  // namespace herald::sandbox::detail
