// Twilio's Messages API: POST/GET /2010-04-01/Accounts/{AccountSid}/Messages.json and
// GET …/Messages/{Sid}.json, Basic auth, magic numbers, signed status callbacks.
#include <algorithm>

#include "herald/crypto.hpp"
#include "routes.hpp"

namespace herald::sandbox::detail {

using json = nlohmann::json;

namespace {

constexpr std::string_view kPrefix = "/2010-04-01/Accounts/";
const std::string kService = "twilio";

ServerResponse twilio_error(unsigned status, int code, std::string message) {
  return json_response(status, dump(json{{"code", code},
                                         {"message", std::move(message)},
                                         {"more_info", "https://www.twilio.com/docs/errors/" + std::to_string(code)},
                                         {"status", status}}));
}

ServerResponse unauthenticated() {
  ServerResponse res = twilio_error(401, 20003, "Authenticate");
  res.headers.emplace_back("WWW-Authenticate", "Basic realm=\"Twilio API\"");
  return res;
}

/// "user:password" from a Basic authorization header; nullopt when absent or malformed.
std::optional<std::pair<std::string, std::string>> basic_auth(const ServerRequest& req) {
  const std::string h = header_of(req, "authorization");
  if (h.size() < 6 || !(h.compare(0, 6, "Basic ") == 0 || h.compare(0, 6, "basic ") == 0)) return std::nullopt;
  std::string decoded;
  try {
    decoded = crypto::base64_decode(std::string_view(h).substr(6));
  } catch (const std::exception&) {
    return std::nullopt;
  }
  const auto colon = decoded.find(':');
  if (colon == std::string::npos || colon == 0) return std::nullopt;
  return std::make_pair(decoded.substr(0, colon), decoded.substr(colon + 1));
}

bool is_e164(std::string_view s) {
  if (s.size() < 3 || s.size() > 16 || s[0] != '+' || s[1] < '1' || s[1] > '9') return false;
  return std::all_of(s.begin() + 1, s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

std::string form_value(const std::vector<std::pair<std::string, std::string>>& form, std::string_view key) {
  for (const auto& [k, v] : form) {
    if (k == key) return v;
  }
  return {};
}

/// GSM-7 messages split at 153 characters after the first 160; good enough for a count.
int segments(std::string_view body) {
  if (body.size() <= 160) return 1;
  return static_cast<int>((body.size() + 152) / 153);
}

std::string message_uri(const std::string& account, const std::string& sid) {
  return std::string(kPrefix) + account + "/Messages/" + sid + ".json";
}

/// The message resource as Twilio renders it, with the status in force now.
json resource(const Record& r, std::int64_t now) {
  const Step* s = r.step_at(now);
  const std::string status = s ? s->status : "queued";
  json error_code = nullptr;
  json error_message = nullptr;
  if (s && !s->error_code.empty()) {
    error_code = std::stoi(s->error_code);
    error_message = "Unknown destination handset";
  }
  const std::string created = rfc2822(r.received_at_ms);
  const std::string updated = rfc2822(s ? s->at_ms : r.received_at_ms);
  const std::string sid = r.public_id();
  const std::string from = r.extra.value("from", std::string{});
  const std::string service_sid = r.extra.value("messaging_service_sid", std::string{});
  return {{"sid", sid},
          {"account_sid", r.account},
          {"api_version", "2010-04-01"},
          {"to", r.to},
          {"from", from.empty() ? json(nullptr) : json(from)},
          {"messaging_service_sid", service_sid.empty() ? json(nullptr) : json(service_sid)},
          {"body", r.text},
          {"status", status},
          {"direction", "outbound-api"},
          {"date_created", created},
          {"date_updated", updated},
          {"date_sent", status == "queued" ? json(nullptr) : json(updated)},
          {"num_segments", std::to_string(segments(r.text))},
          {"num_media", "0"},
          {"price", nullptr},
          {"price_unit", "USD"},
          {"error_code", error_code},
          {"error_message", error_message},
          {"uri", message_uri(r.account, sid)},
          {"subresource_uris", {{"media", std::string(kPrefix) + r.account + "/Messages/" + sid + "/Media.json"}}}};
}

/// The X-Twilio-Signature of a form POST to `url`.
std::string twilio_signature(std::string_view auth_token, const std::string& url,
                             std::vector<std::pair<std::string, std::string>> params) {
  std::sort(params.begin(), params.end());
  std::string data = url;
  for (const auto& [k, v] : params) {
    data += k;
    data += v;
  }
  return crypto::base64(crypto::hmac_sha1(auth_token, data));
}

http::Request status_callback(const std::string& url, const std::string& auth_token,
                              std::vector<std::pair<std::string, std::string>> params) {
  http::Request r;
  r.method = "POST";
  r.url = url;
  r.version = http::Request::Version::http1_1;
  for (const auto& [k, v] : params) {
    if (!r.body.empty()) r.body += '&';
    r.body += crypto::form_encode(k);
    r.body += '=';
    r.body += crypto::form_encode(v);
  }
  r.headers.emplace_back("Content-Type: application/x-www-form-urlencoded");
  r.headers.emplace_back("X-Twilio-Signature: " + twilio_signature(auth_token, url, std::move(params)));
  return r;
}

ServerResponse create(State& state, const ServerRequest& req, const std::string& account,
                      const std::string& auth_token) {
  const std::int64_t now = epoch_ms();
  const Verdict v = state.draw(kService, now);
  if (!v.accepted) return fault_response(Dialect::twilio, v);

  const auto form = crypto::form_decode(req.body);
  const std::string to = form_value(form, "To");
  const std::string from = form_value(form, "From");
  const std::string service_sid = form_value(form, "MessagingServiceSid");
  const std::string body = form_value(form, "Body");
  const std::string callback = form_value(form, "StatusCallback");
  auto reject = [&](int code, std::string message) {
    state.count_rejected(kService);
    ServerResponse res = twilio_error(400, code, std::move(message));
    res.delay = v.latency;
    return res;
  };
  if (to.empty()) return reject(21604, "A 'To' phone number is required.");
  if (from.empty() && service_sid.empty()) return reject(21603, "A 'From' phone number is required.");
  if (body.empty()) return reject(21602, "Message body is required.");
  if (!is_e164(to) || to == "+15005550001") return reject(21211, "The 'To' number " + to + " is not a valid phone number.");
  if (to == "+15005550004") return reject(21610, "Attempt to send to unsubscribed recipient");
  if (to == "+15005550009") return reject(21614, "'To' number is not a valid mobile number");

  const CallbackSettings cb = state.callbacks(kService);
  const std::int64_t final_at = now + cb.delay.count();
  const bool undelivered = phone_outcome(to) == Outcome::undelivered;

  Record rec;
  rec.received_at_ms = now;
  rec.service = kService;
  rec.id = "SM" + crypto::hex(state.random_bytes(16));
  rec.path = req.path;
  rec.query = req.query;
  rec.headers = recorded_headers(req);
  note_request(rec, req);
  rec.idempotency_key = header_of(req, "idempotency-key");
  rec.body = req.body;
  rec.to = to;
  rec.text = body;
  rec.account = account;
  rec.timeline = {{now, "queued", ""}, {final_at, "sent", ""}};
  rec.timeline.push_back(undelivered ? Step{final_at, "undelivered", "30003"} : Step{final_at, "delivered", ""});
  rec.extra = {{"account_sid", account}};
  if (!from.empty()) rec.extra["from"] = from;
  if (!service_sid.empty()) rec.extra["messaging_service_sid"] = service_sid;
  if (!callback.empty()) rec.extra["status_callback"] = callback;
  const json answer = resource(rec, now);
  const std::string sid = rec.id;
  state.record(std::move(rec));

  if (cb.enabled && !callback.empty()) {
    const std::string shown_from = from.empty() ? service_sid : from;
    std::vector<http::Request> calls;
    for (const char* status : {"sent", undelivered ? "undelivered" : "delivered"}) {
      std::vector<std::pair<std::string, std::string>> params = {
          {"MessageSid", sid}, {"MessageStatus", status}, {"AccountSid", account},
          {"From", shown_from}, {"To", to},             {"SmsStatus", status}};
      if (!service_sid.empty()) params.emplace_back("MessagingServiceSid", service_sid);
      if (std::string_view(status) == "undelivered") params.emplace_back("ErrorCode", "30003");
      // The auth token lives only in this signature, never in a record.
      calls.push_back(status_callback(callback, auth_token, std::move(params)));
    }
    state.post_in_order(cb.delay, std::move(calls));
  }
  ServerResponse res = json_response(201, dump(answer));
  res.delay = v.latency;
  return res;
}

ServerResponse list(State& state, const ServerRequest& req, const std::string& account) {
  const auto to = query_param(req.query, "To");
  int page_size = 50;
  if (const auto ps = query_param(req.query, "PageSize")) {
    try {
      page_size = std::clamp(std::stoi(*ps), 1, 1000);
    } catch (const std::exception&) {
      return twilio_error(400, 20001, "Invalid PageSize");
    }
  }
  std::vector<Record> found = state.select([&](const Record& r) {
    return r.service == kService && r.account == account && (!to || r.to == *to);
  });
  const std::int64_t now = epoch_ms();
  json messages = json::array();
  for (auto it = found.rbegin(); it != found.rend() && static_cast<int>(messages.size()) < page_size; ++it) {
    messages.push_back(resource(*it, now));
  }
  const std::string uri = std::string(kPrefix) + account + "/Messages.json";
  return json_response(200, dump(json{{"messages", std::move(messages)},
                                      {"page", 0},
                                      {"page_size", page_size},
                                      {"uri", uri},
                                      {"first_page_uri", uri},
                                      {"next_page_uri", nullptr},
                                      {"previous_page_uri", nullptr}}));
}

}  // namespace

ServerResponse handle_twilio(State& state, const ServerRequest& req) {
  // /2010-04-01/Accounts/{AccountSid}/Messages.json | /Messages/{Sid}.json
  const std::string_view rest = std::string_view(req.path).substr(kPrefix.size());
  const auto slash = rest.find('/');
  if (slash == std::string_view::npos || slash == 0) {
    return twilio_error(404, 20404, "The requested resource " + req.path + " was not found");
  }
  const std::string account = crypto::percent_decode(rest.substr(0, slash), false);
  const std::string_view tail = rest.substr(slash);
  const bool collection = tail == "/Messages.json";
  constexpr std::string_view kOne = "/Messages/";
  const bool one = starts_with(tail, kOne) && tail.size() > kOne.size() + 5 &&
                   tail.substr(tail.size() - 5) == ".json" && tail.find('/', kOne.size()) == std::string_view::npos;
  if (!collection && !one) return twilio_error(404, 20404, "The requested resource " + req.path + " was not found");

  const auto auth = basic_auth(req);
  if (!auth || auth->first != account) return unauthenticated();

  if (collection) {
    if (req.method == "POST") return create(state, req, account, auth->second);
    if (req.method == "GET") return list(state, req, account);
    ServerResponse res = twilio_error(405, 20004, "Method not allowed");
    res.headers.emplace_back("Allow", "GET, POST");
    return res;
  }
  if (req.method != "GET") {
    ServerResponse res = twilio_error(405, 20004, "Method not allowed");
    res.headers.emplace_back("Allow", "GET");
    return res;
  }
  const std::string sid(tail.substr(kOne.size(), tail.size() - kOne.size() - 5));
  const auto rec = state.find(sid);
  if (!rec || rec->service != kService || rec->account != account) {
    return twilio_error(404, 20404, "The requested resource " + req.path + " was not found");
  }
  return json_response(200, dump(resource(*rec, epoch_ms())));
}

}  // namespace herald::sandbox::detail
