// SendGrid's v3 mail/send: Bearer auth, the request checks SendGrid makes, one record per
// recipient, and the signed Event Webhook (one JSON array per send).
#include <set>

#include "herald/crypto.hpp"
#include "routes.hpp"

namespace herald::sandbox::detail {

using json = nlohmann::json;

namespace {

const std::string kService = "sendgrid";

ServerResponse sendgrid_error(unsigned status, std::string message, json field) {
  return json_response(status, dump(json{{"errors", json::array({{{"message", std::move(message)},
                                                                  {"field", std::move(field)},
                                                                  {"help", nullptr}}})}}));
}

struct Recipient {
  std::string email;
  std::string subject;
  json custom_args = json::object();
  json substitutions = json::object();  ///< tag -> value, applied to the content as SendGrid does
};

/// The content as this recipient receives it: every substitution tag replaced by its value.
std::string substituted(std::string text, const json& substitutions) {
  for (auto it = substitutions.begin(); it != substitutions.end(); ++it) {
    if (!it.value().is_string() || it.key().empty()) continue;
    const std::string& value = it.value().get_ref<const std::string&>();
    for (auto at = text.find(it.key()); at != std::string::npos; at = text.find(it.key(), at + value.size())) {
      text.replace(at, it.key().size(), value);
    }
  }
  return text;
}

/// Checks the request as SendGrid does; fills `out` on success, returns the error otherwise.
std::optional<ServerResponse> validate(const json& body, std::vector<Recipient>& out, json& content) {
  if (!body.is_object()) return sendgrid_error(400, "Bad Request", nullptr);
  const auto p = body.find("personalizations");
  if (p == body.end() || !p->is_array() || p->empty()) {
    return sendgrid_error(400,
                          "The personalizations field is required and must have at least one personalization.",
                          "personalizations");
  }
  if (p->size() > 1000) {
    return sendgrid_error(400, "The personalizations field must have at most 1000 personalizations.",
                          "personalizations");
  }
  const auto from = body.find("from");
  if (from == body.end() || !from->is_object() || !from->contains("email") || !(*from)["email"].is_string() ||
      (*from)["email"].get<std::string>().find('@') == std::string::npos) {
    return sendgrid_error(400,
                          "The from object must be provided for every email send. It is an object that requires "
                          "an email parameter, but may also contain a name parameter.",
                          "from.email");
  }
  std::string top_subject;
  if (auto s = body.find("subject"); s != body.end() && s->is_string()) top_subject = s->get<std::string>();
  json top_args = json::object();
  if (auto a = body.find("custom_args"); a != body.end() && a->is_object()) top_args = *a;
  const bool has_template = body.contains("template_id");

  std::set<std::string> seen;
  std::size_t total = 0;
  for (std::size_t i = 0; i < p->size(); ++i) {
    const json& pers = (*p)[i];
    const std::string base = "personalizations." + std::to_string(i);
    const auto to = pers.is_object() ? pers.find("to") : pers.end();
    if (!pers.is_object() || to == pers.end() || !to->is_array() || to->empty()) {
      return sendgrid_error(400,
                            "The to array is required for all personalization objects, and must have at least one "
                            "email object with a valid email address.",
                            base + ".to");
    }
    std::string subject = top_subject;
    if (auto s = pers.find("subject"); s != pers.end() && s->is_string()) subject = s->get<std::string>();
    if (subject.empty() && !has_template) {
      return sendgrid_error(400,
                            "The subject is required. You can get around this requirement if you use a template "
                            "with a subject defined or if every personalization has a subject defined.",
                            "subject");
    }
    json subs = json::object();
    if (auto x = pers.find("substitutions"); x != pers.end() && x->is_object()) subs = *x;
    json args = top_args;
    if (auto a = pers.find("custom_args"); a != pers.end() && a->is_object()) {
      for (auto it = a->begin(); it != a->end(); ++it) args[it.key()] = it.value();
    }
    for (const char* kind : {"to", "cc", "bcc"}) {
      const auto list = pers.find(kind);
      if (list == pers.end()) continue;
      if (!list->is_array()) return sendgrid_error(400, std::string("The ") + kind + " field must be an array.", base + "." + kind);
      for (std::size_t j = 0; j < list->size(); ++j) {
        const json& r = (*list)[j];
        const std::string field = base + "." + kind + "." + std::to_string(j) + ".email";
        if (!r.is_object() || !r.contains("email") || !r["email"].is_string() ||
            r["email"].get<std::string>().find('@') == std::string::npos) {
          return sendgrid_error(400, "Does not contain a valid address.", field);
        }
        const std::string email = r["email"].get<std::string>();
        std::string key = email;
        for (char& c : key) c = (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
        if (!seen.insert(key).second) {
          return sendgrid_error(400,
                                "Each email address in the personalization block should be unique between to, cc, "
                                "and bcc. We found the first duplicate instance of [" + email + "] in the " +
                                    base + "." + kind + " field.",
                                base + "." + kind);
        }
        if (++total > 1000) {
          return sendgrid_error(400, "The total number of recipients must be no more than 1000.", "personalizations");
        }
        out.push_back(Recipient{email, subject, args, subs});
      }
    }
  }
  const auto c = body.find("content");
  if (c == body.end() || !c->is_array() || c->empty()) {
    if (!has_template) {
      return sendgrid_error(400,
                            "Unless a valid template_id is provided, the content parameter is required. There must "
                            "be at least one defined content block.",
                            "content");
    }
  } else {
    for (std::size_t i = 0; i < c->size(); ++i) {
      const json& item = (*c)[i];
      for (const char* key : {"type", "value"}) {
        if (!item.is_object() || !item.contains(key) || !item[key].is_string() || item[key].get<std::string>().empty()) {
          return sendgrid_error(400, std::string("The content ") + key + " is required.",
                                "content." + std::to_string(i) + "." + key);
        }
      }
    }
    // SendGrid's order: text/plain, when present, is the first block.
    for (std::size_t i = 1; i < c->size(); ++i) {
      if ((*c)[i]["type"] == "text/plain") {
        return sendgrid_error(400, "If present, text/plain must be the first content type.",
                              "content." + std::to_string(i) + ".type");
      }
    }
    content = *c;
  }
  return std::nullopt;
}

/// The events one recipient produces, in order (processed first).
std::vector<json> events_for(Outcome o) {
  std::vector<json> ev = {{{"event", "processed"}}};
  switch (o) {
    case Outcome::bounce:
      ev.push_back({{"event", "bounce"},
                    {"type", "bounce"},
                    {"status", "5.1.1"},
                    {"reason", "550 5.1.1 The email account that you tried to reach does not exist."}});
      break;
    case Outcome::soft_bounce:
      ev.push_back({{"event", "deferred"}, {"response", "451 4.7.1 Try again later"}, {"attempt", "1"}});
      ev.push_back({{"event", "delivered"}, {"response", "250 OK"}});
      break;
    case Outcome::unsubscribe:
      ev.push_back({{"event", "delivered"}, {"response", "250 OK"}});
      ev.push_back({{"event", "unsubscribe"}});
      break;
    case Outcome::open:
      ev.push_back({{"event", "delivered"}, {"response", "250 OK"}});
      ev.push_back({{"event", "open"}, {"useragent", "herald-sandbox"}, {"ip", "127.0.0.1"}});
      break;
    case Outcome::delivered:
    case Outcome::undelivered:
      ev.push_back({{"event", "delivered"}, {"response", "250 OK"}});
      break;
  }
  return ev;
}

}  // namespace

ServerResponse handle_sendgrid(State& state, const ServerRequest& req) {
  if (req.method != "POST") {
    ServerResponse res = sendgrid_error(405, "Method not allowed", nullptr);
    res.headers.emplace_back("Allow", "POST");
    return res;
  }
  const std::string auth = header_of(req, "authorization");
  if (auth.size() <= 7 || !(auth.compare(0, 7, "Bearer ") == 0 || auth.compare(0, 7, "bearer ") == 0)) {
    return sendgrid_error(401, "The provided authorization grant is invalid, expired, or revoked", nullptr);
  }
  const std::int64_t now = epoch_ms();
  const Verdict v = state.draw(kService, now);
  if (!v.accepted) return fault_response(Dialect::sendgrid, v);

  std::vector<Recipient> recipients;
  json content = json::array();
  const json body = json::parse(req.body, nullptr, false);
  if (auto err = validate(body, recipients, content)) {
    state.count_rejected(kService);
    err->delay = v.latency;
    return *err;
  }

  const std::string x_message_id = crypto::base64url(state.random_bytes(16));  // 22 url-safe characters
  const CallbackSettings cb = state.callbacks(kService);
  const std::int64_t final_at = now + cb.delay.count();
  const auto headers = recorded_headers(req);
  const std::string idempotency_key = header_of(req, "idempotency-key");
  std::string first_text;
  std::string html;
  if (!content.empty()) first_text = content[0].value("value", std::string{});
  for (const json& block : content) {
    if (block.is_object() && block.value("type", std::string{}) == "text/html") html = block.value("value", std::string{});
  }
  json events = json::array();
  for (std::size_t n = 0; n < recipients.size(); ++n) {
    Recipient& r = recipients[n];
    const std::string sg_message_id = x_message_id + ".sandbox." + std::to_string(n);
    const Outcome outcome = email_outcome(r.email);
    Record rec;
    rec.received_at_ms = now;
    rec.service = kService;
    rec.id = sg_message_id;
    rec.path = req.path;
    rec.query = req.query;
    rec.headers = headers;
    note_request(rec, req);
    rec.idempotency_key = idempotency_key;
    rec.to = r.email;
    rec.subject = r.subject;
    rec.text = substituted(first_text, r.substitutions);
    rec.timeline.push_back({now, "processed", ""});
    for (json& e : events_for(outcome)) {
      const std::string name = e["event"].get<std::string>();
      if (name != "processed") rec.timeline.push_back({final_at, name, name == "bounce" ? "5.1.1" : ""});
      e["email"] = r.email;
      e["sg_message_id"] = sg_message_id;
      e["sg_event_id"] = crypto::base64url(state.random_bytes(16));
      e["smtp-id"] = "<" + x_message_id + "@sandbox.herald>";
      for (auto it = r.custom_args.begin(); it != r.custom_args.end(); ++it) {
        if (!e.contains(it.key())) e[it.key()] = it.value();
      }
      events.push_back(std::move(e));
    }
    rec.extra = {{"x_message_id", x_message_id}, {"custom_args", r.custom_args}, {"content", content}};
    if (!html.empty()) rec.extra["html"] = substituted(html, r.substitutions);
    // The request body is kept once, on the first recipient's record.
    if (n == 0) rec.body = req.body;
    state.record(std::move(rec));
  }

  if (cb.enabled && !cb.url.empty() && !events.empty()) {
    http::Request r;
    r.method = "POST";
    r.url = cb.url;
    r.version = http::Request::Version::http1_1;
    r.headers.emplace_back("Content-Type: application/json");
    const crypto::PrivateKey* key = &state.sendgrid_key();  // lives as long as the state, which outlives the scheduler
    std::vector<http::Request> batch;
    batch.push_back(std::move(r));
    state.post_in_order(cb.delay, std::move(batch), [key, events = std::move(events)](http::Request& req_out) mutable {
      const std::int64_t t = epoch_ms() / 1000;
      for (json& e : events) e["timestamp"] = t;
      req_out.body = dump(events);
      const std::string ts = std::to_string(t);
      req_out.headers.emplace_back("X-Twilio-Email-Event-Webhook-Timestamp: " + ts);
      req_out.headers.emplace_back("X-Twilio-Email-Event-Webhook-Signature: " +
                                   crypto::base64(key->sign_es256(ts + req_out.body, false)));
    });
  }
  ServerResponse res;
  res.status = 202;
  res.content_type.clear();
  res.headers.emplace_back("X-Message-Id", x_message_id);
  res.delay = v.latency;
  return res;
}

}  // namespace herald::sandbox::detail
