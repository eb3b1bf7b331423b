// Which endpoint a request names (method, path and query), whether it needs the API key or the
// engine, and the key check itself.
#include "herald/api.hpp"

#include <charconv>

#include "herald/crypto.hpp"
#include "herald/errors.hpp"

namespace herald::api {

namespace {

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

KeyCheck check_key(std::string_view authorization, const std::vector<std::string>& key_sha256_hex) {
  constexpr std::string_view bearer = "Bearer ";
  if (authorization.size() <= bearer.size() || authorization.substr(0, bearer.size()) != bearer) return KeyCheck::missing;
  const std::string presented = crypto::hex(crypto::sha256(authorization.substr(bearer.size())));
  bool match = false;
  for (const auto& h : key_sha256_hex) match = crypto::constant_time_equal(presented, h) || match;  // no early exit
  return match ? KeyCheck::ok : KeyCheck::wrong;
}

}  // namespace herald::api
