#include "adapters.hpp"

#include "herald/json_text.hpp"

namespace herald::adapters {

namespace {

/// herald's message document: the recipient, the rendered text and the data.
std::string message_body(const SendContext& ctx) {
  const Notification& n = ctx.notification;
  std::string body;
  body.reserve(96 + n.recipient_json.size() + n.data_json.size() + ctx.text.size());
  body += "{\"id\":";
  body += std::to_string(n.id);
  body += ",\"type\":";
  detail::append_json_string(body, n.type);
  body += ",\"tenant\":";
  detail::append_json_string(body, n.tenant);
  body += ",\"channel\":";
  detail::append_json_string(body, ctx.plan.channel);
  body += ",\"to\":";
  body += n.recipient_json;  // validated as a JSON object at intake
  body += ",\"text\":";
  detail::append_json_string(body, ctx.text);
  body += ",\"data\":";
  body += n.data_json;
  if (!ctx.receipt_url.empty()) {
    body += ",\"callback_url\":";
    detail::append_json_string(body, ctx.receipt_url);
  }
  body += "}";
  return body;
}

}  // namespace

http::Request herald_json_post(const ProviderConfig& c, std::string url, const SendContext& ctx) {
  http::Request req;
  req.method = "POST";
  req.url = std::move(url);
  req.timeout = std::chrono::milliseconds(c.timeout_ms);
  req.body = message_body(ctx);
  req.headers.reserve(5 + c.headers.size());
  req.headers.emplace_back("Content-Type: application/json");
  req.headers.emplace_back("X-Herald-Id: " + std::to_string(ctx.notification.id));
  req.headers.emplace_back("X-Herald-Attempt: " + std::to_string(ctx.attempt));
  // The same key on every attempt lets the receiver drop a resend it already has.
  req.headers.emplace_back("Idempotency-Key: herald-" + std::to_string(ctx.notification.id));
  if (ctx.in_doubt) req.headers.emplace_back("X-Herald-In-Doubt: 1");
  for (const auto& [k, v] : c.headers) req.headers.emplace_back(k + ": " + v);
  return req;
}

}  // namespace herald::adapters
