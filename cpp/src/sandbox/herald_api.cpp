// herald's own API: POST /v1/{provider}/messages (with signed JSON receipts to callback_url),
// GET /v1/{provider}/messages/{id}, GET /v1/{provider}/messages?idempotency_key=K, POST /hooks/{name}.
#include "herald/crypto.hpp"
#include "routes.hpp"

namespace herald::sandbox::detail {

using json = nlohmann::json;

namespace {

constexpr std::string_view kSendPrefix = "/v1/";
constexpr std::string_view kHookPrefix = "/hooks/";

/// The status steps after acceptance, in herald's receipt vocabulary.
std::vector<Step> outcome_steps(Outcome o, std::int64_t at_ms) {
  switch (o) {
    case Outcome::undelivered: return {{at_ms, "failed", "30003"}};
    case Outcome::bounce: return {{at_ms, "bounced_hard", "bounce"}};
    case Outcome::soft_bounce: return {{at_ms, "bounced_soft", "deferred"}, {at_ms, "delivered", ""}};
    case Outcome::unsubscribe: return {{at_ms, "delivered", ""}, {at_ms, "opted_out", ""}};
    case Outcome::open: return {{at_ms, "delivered", ""}, {at_ms, "opened", ""}};
    case Outcome::delivered: break;
  }
  return {{at_ms, "delivered", ""}};
}

json status_json(const Record& r, std::int64_t now) {
  json j = {{"id", r.public_id()},
            {"provider", r.service},
            {"status", "accepted"},
            {"error_code", ""},
            {"idempotency_key", r.idempotency_key},
            {"to", r.to},
            {"received_at_ms", r.received_at_ms}};
  if (const Step* s = r.step_at(now)) {
    j["status"] = s->status;
    j["error_code"] = s->error_code;
  }
  return j;
}

ServerResponse send(State& state, const ServerRequest& req, std::string provider, bool is_hook) {
  const std::int64_t now = epoch_ms();
  const Verdict v = state.draw(provider, now);
  if (!v.accepted) return fault_response(Dialect::herald, v);

  Record rec;
  rec.received_at_ms = now;
  rec.service = std::move(provider);
  rec.path = req.path;
  rec.query = req.query;
  rec.headers = recorded_headers(req);
  note_request(rec, req);
  rec.idempotency_key = header_of(req, "idempotency-key");
  rec.body = req.body;

  std::string herald_id;
  std::string callback_url;
  Outcome outcome = Outcome::delivered;
  CallbackSettings cb;
  if (!is_hook) {
    cb = state.callbacks(rec.service);
    const json body = json::parse(req.body, nullptr, false);
    if (body.is_object()) {
      if (auto it = body.find("id"); it != body.end() && (it->is_number() || it->is_string())) {
        herald_id = it->is_string() ? it->get<std::string>() : it->dump();
      }
      if (auto it = body.find("to"); it != body.end()) {
        if (it->is_object()) {
          if (auto e = it->find("email"); e != it->end() && e->is_string()) {
            rec.to = e->get<std::string>();
            outcome = email_outcome(rec.to);
          } else if (auto p = it->find("phone"); p != it->end() && p->is_string()) {
            rec.to = p->get<std::string>();
            outcome = phone_outcome(rec.to);
          }
        } else if (it->is_string()) {
          rec.to = it->get<std::string>();
        }
      }
      if (auto it = body.find("text"); it != body.end() && it->is_string()) rec.text = it->get<std::string>();
      if (auto it = body.find("subject"); it != body.end() && it->is_string()) rec.subject = it->get<std::string>();
      // The step's other content, listed with the message when the step had it.
      for (const char* key : {"html", "title", "image", "payload"}) {
        if (auto it = body.find(key); it != body.end() && (it->is_string() || it->is_object())) rec.extra[key] = *it;
      }
      if (auto it = body.find("callback_url"); it != body.end() && it->is_string()) {
        callback_url = it->get<std::string>();
      }
    }
    // Receipts name the delivery the request was for, X-Herald-Id when it came: a step of a plan
    // with many steps has its own id there, while the body's id is its parent's (the one the
    // application knows), which the engine could not match to the step's attempt.
    if (std::string own = header_of(req, "x-herald-id"); !own.empty()) herald_id = std::move(own);
    rec.timeline.push_back({now, "accepted", ""});
    for (Step& s : outcome_steps(outcome, now + cb.delay.count())) rec.timeline.push_back(std::move(s));
  }
  std::vector<Step> later(rec.timeline.begin() + (rec.timeline.empty() ? 0 : 1), rec.timeline.end());
  const std::uint64_t seq = state.record(std::move(rec));

  ServerResponse res;
  res.delay = v.latency;
  if (is_hook) {
    res.status = 200;
    res.content_type = "text/plain";
    res.body = "ok";
    return res;
  }
  const std::string id = "sbx-" + std::to_string(seq);
  if (cb.enabled && !callback_url.empty()) {
    std::vector<http::Request> receipts;
    for (const Step& s : later) {
      json receipt = {{"herald_id", herald_id}, {"message_id", id}, {"status", s.status}, {"error_code", s.error_code}};
      // herald's ids are numbers; keep the number form when it is one.
      if (!herald_id.empty() && herald_id.find_first_not_of("0123456789") == std::string::npos &&
          herald_id.size() < 19) {
        receipt["herald_id"] = std::stoll(herald_id);
      }
      http::Request r;
      r.method = "POST";
      r.url = callback_url;
      r.body = dump(receipt);
      r.version = http::Request::Version::http1_1;
      r.headers.emplace_back("Content-Type: application/json");
      receipts.push_back(std::move(r));
    }
    // Signed when sent, not now: the receiver checks t against its clock.
    state.post_in_order(cb.delay, std::move(receipts), [secret = state.signing_secret()](http::Request& r) {
      r.headers.emplace_back("X-Herald-Signature: " + herald_signature(secret, epoch_ms() / 1000, r.body));
    });
  }
  res.status = 202;
  res.body.reserve(40 + id.size());
  res.body += R"({"id":")";
  res.body += id;
  res.body += R"(","status":"accepted"})";
  return res;
}

}  // namespace

ServerResponse handle_herald(State& state, const ServerRequest& req) {
  const std::string_view path = req.path;
  if (starts_with(path, kHookPrefix)) {
    if (path.size() == kHookPrefix.size()) return herald_error(404, "not_found", "no such path: " + req.path);
    if (req.method != "POST") return method_not_allowed("POST");
    return send(state, req, "hook:" + crypto::percent_decode(path.substr(kHookPrefix.size()), false), true);
  }
  // /v1/{provider}/messages[/{id}]
  const std::string_view rest = path.substr(kSendPrefix.size());
  const auto slash = rest.find('/');
  if (slash == std::string_view::npos || slash == 0) return herald_error(404, "not_found", "no such path: " + req.path);
  const std::string provider = crypto::percent_decode(rest.substr(0, slash), false);
  const std::string_view tail = rest.substr(slash);
  if (tail == "/messages") {
    if (req.method == "POST") return send(state, req, provider, false);
    if (req.method != "GET") return method_not_allowed("GET, POST");
    const auto key = query_param(req.query, "idempotency_key");
    const std::int64_t now = epoch_ms();
    json list = json::array();
    for (const Record& r : state.select([&](const Record& r) {
           return r.service == provider && (!key || r.idempotency_key == *key);
         })) {
      list.push_back(status_json(r, now));
    }
    return json_response(200, dump(json{{"messages", std::move(list)}}));
  }
  constexpr std::string_view kOne = "/messages/";
  if (starts_with(tail, kOne) && tail.size() > kOne.size() &&
      tail.find('/', kOne.size()) == std::string_view::npos) {
    if (req.method != "GET") return method_not_allowed("GET");
    const std::string id = crypto::percent_decode(tail.substr(kOne.size()), false);
    const auto rec = state.find(id);
    if (!rec || rec->service != provider) return herald_error(404, "not_found", "no message " + id);
    return json_response(200, dump(status_json(*rec, epoch_ms())));
  }
  return herald_error(404, "not_found", "no such path: " + req.path);
}

}  // namespace herald::sandbox::detail
