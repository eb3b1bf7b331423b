#include "herald/api.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <limits>

#include "dashboard_page.hpp"
#include "herald/crypto.hpp"
#include "herald/errors.hpp"
#include "herald/metrics.hpp"

namespace herald::api {

namespace {

using json = nlohmann::json;

/// The Python type name a JSON value arrives as, for the same "(got int)" texts as the binding.
const char* py_type(const json& v) {
  switch (v.type()) {
    case json::value_t::null: return "NoneType";
    case json::value_t::boolean: return "bool";
    case json::value_t::number_integer:
    case json::value_t::number_unsigned: return "int";
    case json::value_t::number_float: return "float";
    case json::value_t::string: return "str";
    case json::value_t::array: return "list";
    case json::value_t::object: return "dict";
    case json::value_t::binary: return "int";  // an integer wider than 64 bits (StrictIntegers)
    default: return "object";
  }
}

/// As the binding's brief_text: at most 40 bytes, then "...".
std::string brief(std::string text) {
  constexpr std::size_t limit = 40;
  if (text.size() <= limit) return text;
  text.resize(limit);
  return text + "...";
}

/// The number as written. An integer too wide for 64 bits is held as binary (see StrictIntegers).
std::string number_text(const json& v) {
  if (v.is_binary()) return brief(std::string(v.get_binary().begin(), v.get_binary().end()));
  return brief(v.dump());
}

/// A DOM parser that keeps integers too wide for 64 bits apart: nlohmann would read them as
/// doubles and lose digits, where the Python API refuses them. JSON text never yields binary, so
/// such an integer is held as binary carrying its digits, and refused by name where it is read.
struct StrictIntegers {
  explicit StrictIntegers(json& root) : dom(root, true) {}
  bool null() { return dom.null(); }
  bool boolean(bool v) { return dom.boolean(v); }
  bool number_integer(json::number_integer_t v) { return dom.number_integer(v); }
  bool number_unsigned(json::number_unsigned_t v) { return dom.number_unsigned(v); }
  bool number_float(json::number_float_t v, const std::string& text) {
    if (text.find_first_of(".eE") == std::string::npos) {
      json::binary_t digits(std::vector<std::uint8_t>(text.begin(), text.end()));
      return dom.binary(digits);
    }
    return dom.number_float(v, text);
  }
  bool string(std::string& v) { return dom.string(v); }
  bool binary(json::binary_t& v) { return dom.binary(v); }
  bool start_object(std::size_t n) { return dom.start_object(n); }
  bool key(std::string& k) { return dom.key(k); }
  bool end_object() { return dom.end_object(); }
  bool start_array(std::size_t n) { return dom.start_array(n); }
  bool end_array() { return dom.end_array(); }
  template <class Exception>
  bool parse_error(std::size_t at, const std::string& token, const Exception& e) {
    return dom.parse_error(at, token, e);  // throws json::parse_error
  }

  nlohmann::detail::json_sax_dom_parser<json> dom;
};

bool is_wide_integer(const json& v) {
  return v.is_binary() ||
         (v.is_number_unsigned() && v.get<std::uint64_t>() > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()));
}

bool parse_id(std::string_view text, Id& out) {
  if (text.empty() || text.size() > 19) return false;
  const auto* end = text.data() + text.size();
  const auto [ptr, ec] = std::from_chars(text.data(), end, out);
  return ec == std::errc() && ptr == end && out >= 0;
}

std::size_t parse_limit(std::string_view query) {
  for (const auto& [k, v] : crypto::form_decode(query)) {
    if (k != "limit") continue;
    std::int64_t n = 0;
    const auto* end = v.data() + v.size();
    const auto [ptr, ec] = std::from_chars(v.data(), end, n);
    if (v.empty() || ec != std::errc() || ptr != end || n < 1 || n > 1'000'000) {
      throw ValidationError("limit", "must be an integer from 1 to 1000000 (got '" + v + "')");
    }
    return static_cast<std::size_t>(n);
  }
  return 0;
}

/// Path segments after "/v1/".
std::vector<std::string_view> segments(std::string_view path) {
  std::vector<std::string_view> out;
  while (!path.empty()) {
    const auto slash = path.find('/');
    out.push_back(path.substr(0, slash));
    if (slash == std::string_view::npos) break;
    path.remove_prefix(slash + 1);
  }
  return out;
}

/// A text field: absent/null gives nullopt, a non-string is refused as the binding does.
std::optional<std::string> text_field(const json& obj, const char* key, const std::string& prefix) {
  const auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return std::nullopt;
  if (!it->is_string()) {
    throw ValidationError(prefix + key, std::string("must be a string (got ") + py_type(*it) + ")");
  }
  return it->get<std::string>();
}

/// Refuses what the binding's JSON writer refuses: nesting past max_payload_depth (the object
/// itself is level 1) and integers beyond 64 bits. `open` counts the containers around `v`.
void check_payload(const json& v, std::string& path, int open) {
  if (v.is_object() || v.is_array()) {
    if (open >= max_payload_depth) {
      throw ValidationError(path, "is nested deeper than " + std::to_string(max_payload_depth) + " levels");
    }
    const auto base = path.size();
    if (v.is_object()) {
      for (const auto& [k, item] : v.items()) {
        path += '.';
        path += k;
        check_payload(item, path, open + 1);
        path.resize(base);
      }
    } else {
      std::size_t i = 0;
      for (const auto& item : v) {
        path += '[' + std::to_string(i++) + ']';
        check_payload(item, path, open + 1);
        path.resize(base);
      }
    }
  } else if (is_wide_integer(v)) {
    throw ValidationError(path, "must be an integer from -9223372036854775808 to 9223372036854775807 (got " +
                                    number_text(v) + ")");
  } else if (v.is_number_float() && !std::isfinite(v.get<double>())) {
    throw ValidationError(path, "NaN and infinity are not valid JSON");
  }
}

/// Compact JSON of a recipient or data object, within the binding's limits.
std::string payload_text(const json& v, const std::string& field) {
  std::string path = field;
  check_payload(v, path, 0);
  std::string text = dump(v);
  if (text.size() > max_payload_bytes) throw ValidationError(field, "larger than 256 KiB");
  return text;
}

/// Epoch seconds (a JSON number) to milliseconds, with the binding's ranges and texts.
std::int64_t time_field(const json& v, const std::string& field) {
  const std::string what = "must be a datetime, a timedelta or epoch seconds";
  const auto out_of_range = [&] {
    return ValidationError(field, "must be a time from 1970-01-01 to 9999-12-31: epoch seconds from 0 to " +
                                      std::to_string(max_epoch_s) + " (got " + number_text(v) + ")");
  };
  if (v.is_boolean()) throw ValidationError(field, what + " (got bool)");
  if (v.is_binary()) throw out_of_range();  // an integer wider than 64 bits
  if (v.is_number_integer() || v.is_number_unsigned()) {
    if (v.is_number_unsigned() && v.get<std::uint64_t>() > static_cast<std::uint64_t>(max_epoch_s)) throw out_of_range();
    const auto s = v.get<std::int64_t>();
    if (s < 0 || s > max_epoch_s) throw out_of_range();
    return s * 1000;
  }
  if (v.is_number_float()) {
    const double s = v.get<double>();
    if (!std::isfinite(s)) throw ValidationError(field, "must be a finite number (got " + number_text(v) + ")");
    if (s < 0 || s >= static_cast<double>(max_epoch_s + 1)) throw out_of_range();
    return std::min<std::int64_t>(std::llround(s * 1000.0), max_epoch_s * 1000 + 999);
  }
  throw ValidationError(field, what + " (got " + py_type(v) + ")");
}

json id_text(Id id) { return std::to_string(id); }
json text_or_null(const std::string& s) { return s.empty() ? json(nullptr) : json(s); }
json seconds_or_null(std::int64_t ms) { return ms == 0 ? json(nullptr) : json(static_cast<double>(ms) / 1000.0); }

http::ServerResponse json_response(unsigned status, const json& body) {
  http::ServerResponse r;
  r.status = status;
  r.body = dump(body);
  return r;
}

}  // namespace

Route route(std::string_view method, std::string_view path, std::string_view query) {
  Route r;
  const bool get = method == "GET";
  const bool post = method == "POST";
  const auto only = [&](bool allowed, Action a) {
    r.action = allowed ? a : Action::bad_method;
    return r;
  };
  if (path == "/health") return only(get, Action::health);
  if (path == "/ready") return only(get, Action::ready);
  if (path == "/metrics") return only(get, Action::metrics);
  if (path == "/openapi.json") return only(get, Action::openapi);
  if (path == "/dashboard") return only(get, Action::dashboard_page);
  constexpr std::string_view v1 = "/v1/";
  if (path.substr(0, v1.size()) != v1) return r;
  const auto parts = segments(path.substr(v1.size()));
  if (parts.size() == 1 && parts[0] == "notifications") {
    if (!get) return only(post, Action::send);
    r.limit = parse_limit(query);
    bool given = false;
    for (auto& [k, v] : crypto::form_decode(query)) {
      if (k != "recipient") continue;
      r.recipient = std::move(v);
      given = true;
    }
    if (!given || r.recipient.empty()) throw ValidationError("recipient", "is required (a recipient id)");
    r.action = Action::by_recipient;
    return r;
  }
  if (parts.size() == 1 && parts[0] == "notifications:batch") return only(post, Action::send_many);
  if (parts.size() == 1 && parts[0] == "dead-letters") {
    r.limit = parse_limit(query);
    return only(get, Action::dead_letters);
  }
  if (parts.size() == 1 && parts[0] == "suppressions") {
    r.limit = parse_limit(query);
    return only(get, Action::suppressions);
  }
  if (parts.size() == 1 && parts[0] == "dashboard") {
    r.limit = parse_limit(query);
    return only(get, Action::dashboard);
  }
  if (parts.size() == 3 && parts[0] == "suppressions") {
    r.channel = crypto::percent_decode(parts[1], false);
    r.address = crypto::percent_decode(parts[2], false);
    return only(method == "DELETE", Action::unsuppress);
  }
  if ((parts.size() == 2 || parts.size() == 3) && parts[0] == "notifications") {
    Action a = Action::status;
    bool allowed = get;
    if (parts.size() == 3) {
      if (parts[2] == "trace") {
        a = Action::trace;
      } else if (parts[2] == "retry") {
        a = Action::retry;
        allowed = post;
      } else if (parts[2] == "cancel") {
        a = Action::cancel;
        allowed = post;
      } else {
        return r;
      }
    }
    if (!parse_id(parts[1], r.id)) {
      r.action = Action::bad_id;
      return r;
    }
    return only(allowed, a);
  }
  return r;
}

bool needs_key(Action a) noexcept {
  return a != Action::health && a != Action::ready && a != Action::metrics && a != Action::openapi &&
         a != Action::dashboard_page;
}

bool uses_engine(Action a) noexcept {
  switch (a) {
    case Action::send:
    case Action::send_many:
    case Action::by_recipient:
    case Action::status:
    case Action::trace:
    case Action::retry:
    case Action::cancel:
    case Action::dead_letters:
    case Action::suppressions:
    case Action::unsuppress:
    case Action::metrics:
    case Action::dashboard:
    case Action::ready: return true;
    default: return false;
  }
}

json parse_body(std::string_view body) {
  try {
    json root;
    StrictIntegers sax(root);
    json::sax_parse(body, &sax);
    return root;
  } catch (const json::parse_error& e) {
    std::string why = e.what();
    const auto at = why.find("] ");  // "[json.exception.parse_error.101] parse error at ..."
    if (at != std::string::npos) why = why.substr(at + 2);
    throw ValidationError("body", "is not valid JSON: " + why);
  }
}

Notification decode_notification(const json& j, const std::string& prefix) {
  static const char* const known[] = {"type",         "recipient", "data",       "priority", "idempotency_key",
                                      "ordering_key", "send_at",   "expires_at", "tenant"};
  if (!j.is_object()) {
    if (prefix.empty()) throw ValidationError("body", "must be a JSON object");
    throw ValidationError(prefix.substr(0, prefix.size() - 1), "must be a dict");
  }
  for (const auto& [key, value] : j.items()) {
    bool ok = false;
    for (const char* k : known) ok = ok || key == k;
    if (!ok) throw ValidationError(prefix + key, "unknown field");
  }
  Notification n;
  auto type = text_field(j, "type", prefix);
  if (!type) throw ValidationError(prefix + "type", "is required");
  n.type = std::move(*type);
  if (auto tenant = text_field(j, "tenant", prefix); tenant && !tenant->empty()) n.tenant = std::move(*tenant);
  const auto r = j.find("recipient");
  if (r == j.end() || r->is_null()) throw ValidationError(prefix + "recipient", "is required");
  if (r->is_string()) {
    n.recipient_id = r->get<std::string>();
    n.recipient_json = dump(json{{"id", n.recipient_id}});
  } else if (r->is_object()) {
    auto id = text_field(*r, "id", prefix + "recipient.");
    if (!id) throw ValidationError(prefix + "recipient.id", "is required");
    n.recipient_id = std::move(*id);
    n.recipient_json = payload_text(*r, prefix + "recipient");
  } else {
    throw ValidationError(prefix + "recipient", "must be a user id (str) or a dict with an 'id'");
  }
  if (const auto d = j.find("data"); d != j.end() && !d->is_null()) {
    if (!d->is_object()) throw ValidationError(prefix + "data", "must be a dict");
    n.data_json = payload_text(*d, prefix + "data");
  }
  if (auto priority = text_field(j, "priority", prefix); priority && !priority->empty()) {
    try {
      n.priority = parse_priority(*priority);
    } catch (const ValidationError& e) {
      throw ValidationError(prefix + "priority", std::string(e.what()).substr(std::string("priority: ").size()));
    }
  }
  n.idempotency_key = text_field(j, "idempotency_key", prefix).value_or("");
  n.ordering_key = text_field(j, "ordering_key", prefix).value_or("");
  if (const auto t = j.find("send_at"); t != j.end() && !t->is_null()) n.send_at_ms = time_field(*t, prefix + "send_at");
  if (const auto t = j.find("expires_at"); t != j.end() && !t->is_null()) {
    n.expires_at_ms = time_field(*t, prefix + "expires_at");
  }
  return n;
}

std::vector<Notification> decode_batch(const json& j) {
  if (!j.is_array()) throw ValidationError("notifications", "must be an iterable of dicts");
  std::vector<Notification> out;
  out.reserve(j.size());
  for (std::size_t i = 0; i < j.size(); ++i) {
    out.push_back(decode_notification(j[i], "notifications[" + std::to_string(i) + "]."));
  }
  return out;
}

json encode(const SendResult& r) {
  return json{{"id", id_text(r.id)}, {"state", std::string(to_string(r.state))}, {"duplicate", r.duplicate}};
}

json encode(const StoredNotification& s) {
  const Notification& n = s.notification;
  const DeliveryState& d = s.delivery;
  json out = json::object();
  out["id"] = id_text(n.id);
  out["state"] = std::string(to_string(d.state));
  out["tenant"] = n.tenant;
  out["type"] = n.type;
  out["recipient_id"] = n.recipient_id;
  out["priority"] = std::string(to_string(n.priority));
  out["attempts"] = d.attempt;
  out["provider"] = text_or_null(d.provider);
  out["provider_message_id"] = text_or_null(d.provider_message_id);
  out["last_error"] = text_or_null(d.last_error);
  out["in_doubt"] = d.in_doubt;
  out["idempotency_key"] = text_or_null(n.idempotency_key);
  out["ordering_key"] = text_or_null(n.ordering_key);
  out["created_at"] = seconds_or_null(n.created_at_ms);
  out["updated_at"] = seconds_or_null(s.updated_at_ms);
  out["send_at"] = seconds_or_null(n.send_at_ms);
  out["expires_at"] = seconds_or_null(n.expires_at_ms);
  out["next_attempt_at"] = seconds_or_null(d.state == State::retry_scheduled ? d.next_at_ms : 0);
  out["channel"] = text_or_null(d.channel);
  out["address"] = text_or_null(d.address);
  out["receipt"] = text_or_null(std::string(to_string(d.receipt)));
  out["receipt_at"] = seconds_or_null(d.receipt_at_ms);
  out["cost"] = d.cost;
  return out;
}

json encode(const Event& e) {
  json out = json::object();
  out["id"] = id_text(e.notification_id);
  out["event"] = to_string(e.kind);
  out["at"] = static_cast<double>(e.ts_us) / 1e6;
  out["attempt"] = e.attempt;
  out["provider"] = text_or_null(e.provider);
  out["latency_ms"] = e.latency_us < 0 ? json(nullptr) : json(static_cast<double>(e.latency_us) / 1000.0);
  out["http_status"] = e.http_status == 0 ? json(nullptr) : json(e.http_status);
  out["detail"] = text_or_null(e.detail);
  return out;
}

json encode(const Suppression& x) {
  return json{{"channel", x.channel},   {"address", x.address},   {"reason", to_string(x.reason)},
              {"detail", x.detail},     {"provider", x.provider}, {"notification_id", id_text(x.notification_id)},
              {"at", seconds_or_null(x.at_ms)}};
}

namespace {

json minute_series(const LastHour::Series& series, std::uint64_t MinuteCounts::*field) {
  json out = json::array();
  for (const MinuteCounts& m : series) out.push_back(m.*field);
  return out;
}

json minutes_json(const LastHour::Series& series) {
  return json{{"accepted", minute_series(series, &MinuteCounts::accepted)},
              {"failed", minute_series(series, &MinuteCounts::failed)}};
}

}  // namespace

json dashboard(Engine& engine, std::size_t dead_letters) {
  const EngineStats c = engine.stats();
  const EngineHealth h = engine.health();
  const MetricsGauges g = engine.gauges();
  const std::vector<ProviderHealth> health = engine.provider_health();
  const LastHour hour = engine.attempts_last_hour();
  json stats = {{"received", c.received},         {"deduplicated", c.deduplicated},
                {"attempts", c.attempts},         {"accepted", c.accepted},
                {"retries", c.retries},           {"failovers", c.failovers},
                {"expired", c.expired},           {"dead_lettered", c.dead_lettered},
                {"cancelled", c.cancelled},       {"in_doubt", c.in_doubt},
                {"recovered", c.recovered},       {"active", c.active},
                {"in_flight", c.in_flight},       {"suppressed", c.suppressed},
                {"receipts", c.receipts},         {"receipts_rejected", c.receipts_rejected},
                {"lookups", c.lookups},           {"reconciled", c.reconciled},
                {"batched_requests", c.batched_requests}, {"pruned", c.pruned}};
  json queues = json::array();
  for (int p = 0; p < priority_count; ++p) {
    const auto i = static_cast<std::size_t>(p);
    queues.push_back({{"lane", std::string(to_string(static_cast<Priority>(p)))}, {"ready", g.ready[i]}, {"waiting", g.waiting[i]}});
  }
  json providers = json::array();
  for (const auto& [name, in_flight] : g.provider_in_flight) {
    json circuit = nullptr;  // a provider the gauges list is configured, so its health is there too
    for (const ProviderHealth& p : health) {
      if (p.name != name) continue;
      circuit = {{"state", std::string(to_string(p.circuit))},
                 {"failure_rate", p.failure_rate},
                 {"attempts", p.attempts},
                 {"half_open_at", p.circuit == CircuitState::open ? seconds_or_null(p.half_open_at_ms) : json(nullptr)}};
    }
    json minutes = minutes_json(LastHour::Series{});
    for (const auto& [n, series] : hour.providers) {
      if (n == name) minutes = minutes_json(series);
    }
    providers.push_back({{"name", name}, {"in_flight", in_flight}, {"circuit", std::move(circuit)},
                         {"last_hour", std::move(minutes)}});
  }
  json last_hour = minutes_json(hour.total);
  last_hour["start"] = static_cast<double>(hour.start_ms) / 1000.0;
  last_hour["bucket_seconds"] = 60;
  json dead = json::array();
  for (const auto& s : engine.dead_letters(dead_letters)) dead.push_back(encode(s));
  return json{{"at", static_cast<double>(engine.now_ms()) / 1000.0},
              {"stats", std::move(stats)},
              {"health", {{"closing", h.closing},
                          {"store_degraded", h.store.degraded},
                          {"store_error", text_or_null(h.store.error)},
                          {"store_held_batches", h.store.held_batches},
                          {"store_write_faults", h.store.write_faults}}},
              {"queues", std::move(queues)},
              {"scheduled", g.scheduled},
              {"providers", std::move(providers)},
              {"last_hour", std::move(last_hour)},
              {"dead_letters", std::move(dead)}};
}

std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

http::ServerResponse api_error(unsigned status, std::string_view type, std::string_view message, std::string_view field) {
  json e = json::object();
  e["type"] = std::string(type);
  if (!field.empty()) e["field"] = std::string(field);
  e["message"] = std::string(message);
  return json_response(status, json{{"error", e}});
}

http::ServerResponse error_for(std::exception_ptr error) {
  try {
    std::rethrow_exception(error);
  } catch (const ValidationError& e) {
    return api_error(400, "ValidationError", e.what(), e.field());
  } catch (const NotFound& e) {
    return api_error(404, "NotFound", e.what());
  } catch (const IdempotencyConflict& e) {
    return api_error(409, "IdempotencyConflict", e.what());
  } catch (const InvalidState& e) {
    return api_error(409, "InvalidState", e.what());
  } catch (const StoreError& e) {
    return api_error(503, "StoreError", e.what());
  } catch (const EngineClosed& e) {
    return api_error(503, "EngineClosed", e.what());
  } catch (const ConfigError& e) {
    return api_error(500, "ConfigError", e.what(), e.field());
  } catch (const Error& e) {
    return api_error(500, "HeraldError", e.what());
  } catch (const std::exception& e) {
    return api_error(500, "HeraldError", std::string("internal error: ") + e.what());
  } catch (...) {
    return api_error(500, "HeraldError", "internal error");
  }
}

KeyCheck check_key(std::string_view authorization, const std::vector<std::string>& key_sha256_hex) {
  constexpr std::string_view bearer = "Bearer ";
  if (authorization.size() <= bearer.size() || authorization.substr(0, bearer.size()) != bearer) return KeyCheck::missing;
  const std::string presented = crypto::hex(crypto::sha256(authorization.substr(bearer.size())));
  bool match = false;
  for (const auto& h : key_sha256_hex) match = crypto::constant_time_equal(presented, h) || match;  // no early exit
  return match ? KeyCheck::ok : KeyCheck::wrong;
}

http::ServerResponse perform(Engine& engine, const Route& r, const std::string& body) {
  try {
    switch (r.action) {
      case Action::send: return json_response(200, encode(engine.send(decode_notification(parse_body(body)))));
      case Action::send_many: {
        json out = json::array();
        for (const auto& x : engine.send_many(decode_batch(parse_body(body)))) out.push_back(encode(x));
        return json_response(200, json{{"receipts", std::move(out)}});
      }
      case Action::by_recipient: {
        json out = json::array();
        for (const auto& s : engine.by_recipient(r.recipient, r.limit == 0 ? 20 : r.limit)) out.push_back(encode(s));
        return json_response(200, json{{"notifications", std::move(out)}});
      }
      case Action::status: {
        const auto s = engine.status(r.id);
        if (!s) return api_error(404, "NotFound", "notification " + std::to_string(r.id) + " not found");
        return json_response(200, encode(*s));
      }
      case Action::trace: {
        json out = json::array();
        for (const auto& e : engine.trace(r.id)) out.push_back(encode(e));
        return json_response(200, json{{"events", std::move(out)}});
      }
      case Action::dead_letters: {
        json out = json::array();
        for (const auto& s : engine.dead_letters(r.limit == 0 ? 1000 : r.limit)) out.push_back(encode(s));
        return json_response(200, json{{"notifications", std::move(out)}});
      }
      case Action::suppressions: {
        json out = json::array();
        for (const auto& x : engine.suppressions(r.limit == 0 ? 10'000 : r.limit)) out.push_back(encode(x));
        return json_response(200, json{{"suppressions", std::move(out)}});
      }
      case Action::retry:
        engine.retry(r.id);
        return json_response(200, json::object());
      case Action::cancel: return json_response(200, json{{"cancelled", engine.cancel(r.id)}});
      case Action::unsuppress: return json_response(200, json{{"removed", engine.unsuppress(r.channel, r.address)}});
      case Action::health: return json_response(200, json{{"alive", true}});
      case Action::metrics: {
        http::ServerResponse resp;
        resp.status = 200;
        resp.content_type = "text/plain; version=0.0.4; charset=utf-8";
        resp.body = engine.metrics_text();
        return resp;
      }
      case Action::openapi: break;  // answered by the server, which holds the document
      case Action::dashboard: return json_response(200, dashboard(engine, r.limit == 0 ? 20 : r.limit));
      case Action::dashboard_page: {
        http::ServerResponse resp;
        resp.content_type = "text/html; charset=utf-8";
        resp.body = std::string(kDashboardPage);
        resp.headers.emplace_back("Cache-Control", "no-store");
        return resp;
      }
      case Action::ready: {
        const EngineHealth h = engine.health();
        const bool ready = !h.closing && !h.store.degraded;
        json out{{"ready", ready}, {"closing", h.closing}, {"store_degraded", h.store.degraded}};
        // Providers' health is information, not readiness: an open circuit fails over, it does not
        // make the engine unable to work.
        if (!h.closing) {
          try {
            json providers = json::object();
            for (const ProviderHealth& p : engine.provider_health()) {
              providers[p.name] = {{"circuit", std::string(to_string(p.circuit))},
                                   {"failure_rate", p.failure_rate},
                                   {"attempts", p.attempts},
                                   {"p99_ms", p.p99_ms < 0 ? json(nullptr) : json(p.p99_ms)},
                                   {"cost", p.cost}};
            }
            out["providers"] = std::move(providers);
          } catch (const EngineClosed&) {
            // closed meanwhile: the answer says so without them
          }
        }
        auto resp = json_response(ready ? 200 : 503, out);
        if (!ready) resp.headers.emplace_back("Retry-After", "5");
        return resp;
      }
      case Action::bad_id: return api_error(400, "ValidationError", "id: must be a decimal integer from 0 to 9223372036854775807", "id");
      case Action::bad_method: return api_error(405, "MethodNotAllowed", "this endpoint does not take this method");
      case Action::not_found: break;
    }
    return api_error(404, "NoSuchEndpoint", "no such endpoint");
  } catch (...) {
    return error_for(std::current_exception());
  }
}

}  // namespace herald::api
