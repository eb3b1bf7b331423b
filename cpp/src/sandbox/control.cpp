// The sandbox's own surface: /_sandbox/* (records, stats, faults, callbacks, settings, keys), the
// long poll behind the page's live list, and the page itself at GET / (page_html.hpp, page_js.hpp).
#include <charconv>

#include "herald/crypto.hpp"
#include "page_html.hpp"
#include "page_js.hpp"
#include "routes.hpp"

namespace herald::sandbox::detail {

using json = nlohmann::json;

namespace {

constexpr std::chrono::milliseconds kMaxWait{60'000};

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

/// A non-negative integer query parameter; nullopt when absent, -1 when not such a number.
std::optional<std::int64_t> int_param(std::string_view query, std::string_view name) {
  const auto text = query_param(query, name);
  if (!text) return std::nullopt;
  std::int64_t n = -1;
  const auto [ptr, ec] = std::from_chars(text->data(), text->data() + text->size(), n);
  if (text->empty() || ec != std::errc() || ptr != text->data() + text->size() || n < 0) return -1;
  return n;
}

}  // namespace

bool handle_long_poll(const std::shared_ptr<State>& state, const ServerRequest& req, const http::Respond& respond) {
  if (req.path != "/_sandbox/messages" || req.method != "GET") return false;
  const auto after = int_param(req.query, "after");
  if (!after) return false;
  if (*after < 0) {
    respond(herald_error(400, "invalid_query", "after: must be an integer >= 0 (a record's seq)"));
    return true;
  }
  const auto wait = int_param(req.query, "wait_ms").value_or(0);
  if (wait < 0 || wait > kMaxWait.count()) {
    respond(herald_error(400, "invalid_query", "wait_ms: must be an integer from 0 to 60000"));
    return true;
  }
  const auto limit = int_param(req.query, "limit").value_or(1000);
  if (limit < 1 || limit > 100'000) {
    respond(herald_error(400, "invalid_query", "limit: must be an integer from 1 to 100000"));
    return true;
  }
  const auto after_seq = static_cast<std::uint64_t>(*after);
  // The answer is built when it is sent, so it holds every record made until then.
  // Weak: the answer waits in the state's own timers, and a strong reference there would keep the
  // state (and its timers) alive for ever once the server stops (LeakSanitizer found the cycle).
  std::weak_ptr<State> weak = state;
  state->when_newer(after_seq, std::chrono::milliseconds(wait), [weak, after_seq, limit, respond] {
    const auto live = weak.lock();
    if (!live) return;  // the sandbox is stopping
    std::uint64_t last = live->last_seq();
    json msgs = live->messages_since(after_seq > last ? 0 : after_seq, static_cast<std::size_t>(limit));
    respond(json_response(200, dump(json{{"last_seq", last}, {"messages", std::move(msgs)}})));
  });
  return true;
}

ServerResponse handle_control(State& state, const ServerRequest& req) {
  const std::string_view path = req.path;
  const std::string& method = req.method;
  if (path == "/" || path == "/index.html") {
    if (method != "GET") return method_not_allowed("GET");
    ServerResponse res = text_response(200, std::string(kPageHtml), "text/html; charset=utf-8");
    res.headers.emplace_back("Cache-Control", "no-store");
    return res;
  }
  if (path == "/_sandbox/page.js") {
    if (method != "GET") return method_not_allowed("GET");
    ServerResponse res = text_response(200, std::string(kPageJs), "text/javascript; charset=utf-8");
    res.headers.emplace_back("Cache-Control", "no-store");
    return res;
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
