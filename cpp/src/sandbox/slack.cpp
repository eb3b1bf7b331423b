// Slack incoming webhooks: POST /services/{T}/{B}/{X}, a token bucket per hook, plain-text answers.
#include "routes.hpp"

namespace herald::sandbox::detail {

using json = nlohmann::json;

namespace {

const std::string kService = "slack";

}  // namespace

ServerResponse handle_slack(State& state, const ServerRequest& req) {
  constexpr std::string_view kPrefix = "/services/";
  const std::string_view hook = std::string_view(req.path).substr(kPrefix.size());
  // T…/B…/secret: exactly three non-empty parts.
  const auto s1 = hook.find('/');
  const auto s2 = s1 == std::string_view::npos ? s1 : hook.find('/', s1 + 1);
  if (s1 == std::string_view::npos || s1 == 0 || s2 == std::string_view::npos || s2 == s1 + 1 ||
      s2 + 1 >= hook.size() || hook.find('/', s2 + 1) != std::string_view::npos) {
    return text_response(404, "no_service");
  }
  if (req.method != "POST") {
    ServerResponse res = text_response(405, "invalid_method");
    res.headers.emplace_back("Allow", "POST");
    return res;
  }
  const std::int64_t now = epoch_ms();
  const Verdict v = state.draw(kService, now);
  if (!v.accepted) return fault_response(Dialect::slack, v);
  auto reject = [&](ServerResponse res) {
    state.count_rejected(kService);
    res.delay = v.latency;
    return res;
  };
  const json body = json::parse(req.body, nullptr, false);
  if (!body.is_object()) return reject(text_response(400, "invalid_payload"));
  const auto text = body.find("text");
  const bool has_text = text != body.end() && text->is_string() && !text->get<std::string>().empty();
  const auto blocks = body.find("blocks");
  const bool has_blocks = blocks != body.end() && blocks->is_array() && !blocks->empty();
  if (!has_text && !has_blocks) return reject(text_response(400, "no_text"));
  // The hook's id without its secret part names the bucket and the record.
  const std::string name(hook.substr(0, s2));
  if (!state.slack_take(std::string(hook))) {
    ServerResponse res = reject(text_response(429, "rate_limited"));
    res.headers.emplace_back("Retry-After", "1");
    return res;
  }
  Record rec;
  rec.received_at_ms = now;
  rec.service = kService;
  rec.path = "/services/" + name + "/***";  // the last part is the secret: not recorded
  rec.headers = recorded_headers(req);
  note_request(rec, req);
  rec.idempotency_key = header_of(req, "idempotency-key");
  rec.body = req.body;
  rec.to = name;
  rec.text = has_text ? text->get<std::string>() : blocks->dump();
  rec.timeline.push_back({now, "delivered", ""});
  state.record(std::move(rec));
  ServerResponse res = text_response(200, "ok");
  res.delay = v.latency;
  return res;
}

}  // namespace herald::sandbox::detail
