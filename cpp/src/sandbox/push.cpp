// Push services: FCM HTTP v1 (its OAuth2 token endpoint and messages:send) and APNs
// (/3/device/{token} with an ES256 provider token), over HTTP/1.1 or h2c alike.
#include <algorithm>

#include "herald/crypto.hpp"
#include "routes.hpp"

namespace herald::sandbox::detail {

using json = nlohmann::json;

namespace {

constexpr std::size_t kMaxPayload = 4096;

/// A JWT's decoded header and claims; nullopt unless it has three parts of base64url JSON objects.
std::optional<std::pair<json, json>> decode_jwt(std::string_view jwt) {
  const auto d1 = jwt.find('.');
  if (d1 == std::string_view::npos) return std::nullopt;
  const auto d2 = jwt.find('.', d1 + 1);
  if (d2 == std::string_view::npos || jwt.find('.', d2 + 1) != std::string_view::npos) return std::nullopt;
  if (d1 == 0 || d2 == d1 + 1 || d2 + 1 == jwt.size()) return std::nullopt;
  try {
    json header = json::parse(crypto::base64_decode(jwt.substr(0, d1)), nullptr, false);
    json claims = json::parse(crypto::base64_decode(jwt.substr(d1 + 1, d2 - d1 - 1)), nullptr, false);
    if (!header.is_object() || !claims.is_object()) return std::nullopt;
    return std::make_pair(std::move(header), std::move(claims));
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

std::string bearer(const ServerRequest& req) {
  const std::string h = header_of(req, "authorization");
  if (h.size() <= 7) return {};
  std::string scheme = h.substr(0, 7);
  for (char& c : scheme) c = (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
  return scheme == "bearer " ? h.substr(7) : std::string{};
}

// ---- FCM ----------------------------------------------------------------------------------------

const std::string kFcm = "fcm";

ServerResponse google_error(unsigned status, std::string_view google_status, std::string message,
                            std::string_view fcm_code = {}) {
  json err = {{"code", status}, {"message", std::move(message)}, {"status", google_status}};
  if (!fcm_code.empty()) {
    err["details"] = json::array(
        {{{"@type", "type.googleapis.com/google.firebase.fcm.v1.FcmError"}, {"errorCode", fcm_code}}});
  }
  return json_response(status, dump(json{{"error", std::move(err)}}));
}

ServerResponse invalid_grant(std::string description) {
  return json_response(400, dump(json{{"error", "invalid_grant"}, {"error_description", std::move(description)}}));
}

std::string form_value(const std::vector<std::pair<std::string, std::string>>& form, std::string_view key) {
  for (const auto& [k, v] : form) {
    if (k == key) return v;
  }
  return {};
}

// ---- APNs ---------------------------------------------------------------------------------------

const std::string kApns = "apns";

ServerResponse apns_error(unsigned status, std::string_view reason) {
  return json_response(status, dump(json{{"reason", reason}}));
}

bool is_hex64(std::string_view s) {
  return s.size() == 64 && std::all_of(s.begin(), s.end(), [](char c) {
           return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
         });
}

std::string uuid(State& state) {
  std::string b = state.random_bytes(16);
  b[6] = static_cast<char>((b[6] & 0x0f) | 0x40);
  b[8] = static_cast<char>((b[8] & 0x3f) | 0x80);
  std::string h = crypto::hex(b);
  for (char& c : h) c = (c >= 'a' && c <= 'f') ? static_cast<char>(c - 'a' + 'A') : c;
  return h.substr(0, 8) + "-" + h.substr(8, 4) + "-" + h.substr(12, 4) + "-" + h.substr(16, 4) + "-" + h.substr(20);
}

}  // namespace

ServerResponse handle_fcm_token(State& state, const ServerRequest& req) {
  if (req.method != "POST") return method_not_allowed("POST");
  const auto form = crypto::form_decode(req.body);
  if (form_value(form, "grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer") {
    return json_response(400, dump(json{{"error", "unsupported_grant_type"},
                                        {"error_description", "Invalid grant_type"}}));
  }
  const auto jwt = decode_jwt(form_value(form, "assertion"));
  if (!jwt) return invalid_grant("Invalid JWT: not a compact JWS");
  const auto& [header, claims] = *jwt;
  if (header.value("alg", std::string{}) != "RS256") return invalid_grant("Invalid JWT: alg must be RS256");
  if (!claims.contains("iss") || !claims["iss"].is_string() || claims["iss"].get<std::string>().empty()) {
    return invalid_grant("Invalid JWT: iss is required");
  }
  if (!claims.contains("scope") || !claims["scope"].is_string() ||
      claims["scope"].get<std::string>().find("firebase.messaging") == std::string::npos) {
    return invalid_grant("Invalid JWT: scope must include firebase.messaging");
  }
  if (!claims.contains("exp") || !claims["exp"].is_number() || claims["exp"].get<double>() * 1000.0 <= static_cast<double>(epoch_ms())) {
    return invalid_grant("Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe.");
  }
  const auto [token, ttl] = state.issue_fcm_token();
  return json_response(200, dump(json{{"access_token", token}, {"expires_in", ttl}, {"token_type", "Bearer"}}));
}

ServerResponse handle_fcm_send(State& state, const ServerRequest& req) {
  // /v1/projects/{project}/messages:send
  constexpr std::string_view kPrefix = "/v1/projects/";
  constexpr std::string_view kSuffix = "/messages:send";
  const std::string_view path = req.path;
  const std::string project(path.substr(kPrefix.size(), path.size() - kPrefix.size() - kSuffix.size()));
  if (project.empty() || project.find('/') != std::string::npos) {
    return google_error(404, "NOT_FOUND", "Requested entity was not found.");
  }
  if (req.method != "POST") return method_not_allowed("POST");
  if (!state.fcm_token_valid(bearer(req))) {
    return google_error(401, "UNAUTHENTICATED",
                        "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie "
                        "or other valid authentication credential.");
  }
  const std::int64_t now = epoch_ms();
  const Verdict v = state.draw(kFcm, now);
  if (!v.accepted) return fault_response(Dialect::fcm, v);
  auto reject = [&](ServerResponse res) {
    state.count_rejected(kFcm);
    res.delay = v.latency;
    return res;
  };
  if (req.body.size() > kMaxPayload) {
    return reject(google_error(400, "INVALID_ARGUMENT", "Request contains an invalid argument: message is too big",
                               "INVALID_ARGUMENT"));
  }
  const json body = json::parse(req.body, nullptr, false);
  const json* msg = body.is_object() && body.contains("message") && body["message"].is_object() ? &body["message"] : nullptr;
  if (!msg) {
    return reject(google_error(400, "INVALID_ARGUMENT", "Request contains an invalid argument: message is required",
                               "INVALID_ARGUMENT"));
  }
  std::string target;
  int targets = 0;
  for (const char* key : {"token", "topic", "condition"}) {
    if (auto it = msg->find(key); it != msg->end()) {
      ++targets;
      if (it->is_string()) target = it->get<std::string>();
    }
  }
  if (targets != 1 || target.empty()) {
    return reject(google_error(400, "INVALID_ARGUMENT",
                               "Request contains an invalid argument: exactly one of token, topic or condition",
                               "INVALID_ARGUMENT"));
  }
  if (msg->contains("token") && starts_with(target, "unregistered")) {
    return reject(google_error(404, "NOT_FOUND", "Requested entity was not found.", "UNREGISTERED"));
  }
  const std::string name = "projects/" + project + "/messages/" + std::to_string(state.next_number("fcm-message"));
  Record rec;
  rec.received_at_ms = now;
  rec.service = kFcm;
  rec.id = name;
  rec.path = req.path;
  rec.headers = recorded_headers(req);
  note_request(rec, req);
  rec.idempotency_key = header_of(req, "idempotency-key");
  rec.body = req.body;
  rec.to = target;
  if (auto n = msg->find("notification"); n != msg->end() && n->is_object()) {
    rec.subject = n->value("title", std::string{});
    rec.text = n->value("body", std::string{});
  }
  rec.timeline.push_back({now, "sent", ""});
  rec.extra = {{"project", project}};
  state.record(std::move(rec));
  ServerResponse res = json_response(200, dump(json{{"name", name}}));
  res.delay = v.latency;
  return res;
}

ServerResponse handle_apns(State& state, const ServerRequest& req) {
  constexpr std::string_view kPrefix = "/3/device/";
  const std::string token = crypto::percent_decode(std::string_view(req.path).substr(kPrefix.size()), false);
  if (req.method != "POST") {
    ServerResponse res = apns_error(405, "MethodNotAllowed");
    res.headers.emplace_back("Allow", "POST");
    return res;
  }
  const std::string auth = header_of(req, "authorization");
  if (auth.empty()) return apns_error(403, "MissingProviderToken");
  const auto jwt = decode_jwt(bearer(req));
  if (!jwt || jwt->first.value("alg", std::string{}) != "ES256" || !jwt->first.contains("kid") ||
      !jwt->first["kid"].is_string() || !jwt->second.contains("iss") || !jwt->second["iss"].is_string() ||
      !jwt->second.contains("iat") || !jwt->second["iat"].is_number()) {
    return apns_error(403, "InvalidProviderToken");
  }
  const std::int64_t now = epoch_ms();
  if (jwt->second["iat"].get<double>() * 1000.0 < static_cast<double>(now - 3'600'000)) {
    return apns_error(403, "ExpiredProviderToken");
  }
  const std::string topic = header_of(req, "apns-topic");
  if (topic.empty()) return apns_error(400, "MissingTopic");
  const Verdict v = state.draw(kApns, now);
  if (!v.accepted) return fault_response(Dialect::apns, v);
  auto reject = [&](ServerResponse res) {
    state.count_rejected(kApns);
    res.delay = v.latency;
    return res;
  };
  if (!is_hex64(token)) return reject(apns_error(400, "BadDeviceToken"));
  if (starts_with(token, "dead")) {
    return reject(json_response(410, dump(json{{"reason", "Unregistered"}, {"timestamp", now}})));
  }
  if (req.body.empty()) return reject(apns_error(400, "PayloadEmpty"));
  if (req.body.size() > kMaxPayload) return reject(apns_error(413, "PayloadTooLarge"));
  const json payload = json::parse(req.body, nullptr, false);
  if (!payload.is_object()) return reject(apns_error(400, "BadRequest"));

  std::string apns_id = header_of(req, "apns-id");
  if (apns_id.empty()) apns_id = uuid(state);
  Record rec;
  rec.received_at_ms = now;
  rec.service = kApns;
  rec.id = apns_id;
  rec.path = req.path;
  rec.headers = recorded_headers(req);
  note_request(rec, req);
  for (const char* h : {"apns-topic", "apns-push-type", "apns-priority", "apns-expiration", "apns-collapse-id"}) {
    if (std::string val = header_of(req, h); !val.empty()) rec.headers.emplace_back(h, std::move(val));
  }
  rec.idempotency_key = header_of(req, "idempotency-key");
  rec.body = req.body;
  rec.to = token;
  if (auto aps = payload.find("aps"); aps != payload.end() && aps->is_object()) {
    if (auto alert = aps->find("alert"); alert != aps->end()) {
      if (alert->is_string()) {
        rec.text = alert->get<std::string>();
      } else if (alert->is_object()) {
        rec.subject = alert->value("title", std::string{});
        rec.text = alert->value("body", std::string{});
      }
    }
  }
  rec.timeline.push_back({now, "sent", ""});
  rec.extra = {{"topic", topic}, {"http2", req.http2}};
  state.record(std::move(rec));
  ServerResponse res;
  res.status = 200;
  res.content_type.clear();
  res.headers.emplace_back("apns-id", apns_id);
  res.delay = v.latency;
  return res;
}

}  // namespace herald::sandbox::detail
