#include "adapters.hpp"


#include <charconv>
#include <ctime>
#include <optional>

#include <nlohmann/json.hpp>

#include "herald/crypto.hpp"
#include "herald/json_text.hpp"
#include "herald_signature.hpp"

namespace herald::adapters {

namespace {

/// A number's decimal digits, kept on the stack: a request writes the notification's id three times.
class Digits {
 public:
  explicit Digits(std::int64_t value) : end_(detail::write_decimal(text_, value)) {}
  operator std::string_view() const { return {text_, static_cast<std::size_t>(end_ - text_)}; }  // NOLINT
 private:
  char text_[detail::decimal_bound];
  char* end_;
};

/// `prefix` then the number: one allocation (a header, or part of a body).
std::string text_and_number(std::string_view prefix, std::string_view digits) {
  std::string out;
  out.reserve(prefix.size() + digits.size());
  out.append(prefix);
  out.append(digits);
  return out;
}

/// herald's message document: the recipient, the rendered text and the data. `id` is the
/// notification's id in digits.
std::string message_body(const SendContext& ctx, std::string_view id) {
  using detail::JsonWriter;
  const Notification& n = ctx.notification;
  // The fixed part is written into room sized once for the longest it can be (as the log's lines
  // are): one request per attempt, on the engine's loop.
  std::string body;
  body.resize(96 + 3 * JsonWriter::int_bound + JsonWriter::string_bound(n.type) + JsonWriter::string_bound(n.tenant) +
              JsonWriter::string_bound(ctx.plan.channel) + n.recipient_json.size() + JsonWriter::string_bound(ctx.text) +
              n.data_json.size());
  JsonWriter w(body.data());
  w.raw("{\"id\":");
  // A step of a plan with many steps carries its parent's id (the one the application knows)
  // and the step; the Idempotency-Key stays the step's own, so two steps are two messages.
  if (n.parent_id != 0) {
    w.integer(n.parent_id);
    w.raw(",\"step\":");
    w.integer(n.step);
  } else {
    w.text(id);
  }
  w.raw(",\"type\":");
  w.string(n.type);
  w.raw(",\"tenant\":");
  w.string(n.tenant);
  w.raw(",\"channel\":");
  w.string(ctx.plan.channel);
  w.raw(",\"to\":");
  w.text(n.recipient_json);  // validated as a JSON object at intake
  w.raw(",\"text\":");
  w.string(ctx.text);
  w.raw(",\"data\":");
  w.text(n.data_json);
  body.resize(static_cast<std::size_t>(w.end() - body.data()));
  // The step's other content, rendered: only the fields it has (most steps have none).
  const Content& c = ctx.plan.content;
  if (!(c.subject.empty() && c.html.empty() && c.title.empty() && c.image.empty() && c.data_json.empty())) {
    const RenderedContent r = render_content(ctx);
    using Field = std::pair<const char*, const std::string*>;
    for (const auto& [key, value] : {Field{"subject", &r.subject}, Field{"html", &r.html}, Field{"title", &r.title},
                                     Field{"image", &r.image}}) {
      if (value->empty()) continue;
      body += ",\"";
      body += key;
      body += "\":";
      detail::append_json_string(body, *value);
    }
    if (!r.data.empty()) {
      body += ",\"payload\":{";
      for (std::size_t i = 0; i < r.data.size(); ++i) {
        if (i > 0) body += ',';
        detail::append_json_string(body, r.data[i].first);
        body += ':';
        detail::append_json_string(body, r.data[i].second);
      }
      body += '}';
    }
  }
  if (!ctx.receipt_url.empty()) {
    body += ",\"callback_url\":";
    detail::append_json_string(body, ctx.receipt_url);
  }
  body += "}";
  return body;
}

}  // namespace

bool retryable_status(long status) noexcept { return status == 408 || status == 425 || status == 429 || status >= 500; }

void set_retryable(Outcome& out, const http::Response& r) {
  out.kind = OutcomeKind::retryable;
  out.retry_after_ms = parse_retry_after_ms(r.header("retry-after"), std::time(nullptr) * 1000LL);
}

std::string transport_error_text(const http::Response& r) {
  return r.timed_out ? "timeout" : "transport: " + r.transport_error;
}

std::optional<LookupResult> lookup_failure(const http::Response& r, const LookupContext& ctx) {
  LookupResult out;
  if (r.status == 0) {
    out.error = transport_error_text(r);
    return out;
  }
  if (r.status == 404 && !ctx.provider_message_id.empty()) {
    out.found = LookupResult::Found::no;
    return out;
  }
  if (r.status < 200 || r.status >= 300) {
    out.error = "HTTP " + std::to_string(r.status) + ": " + short_body(r.body);
    return out;
  }
  return std::nullopt;
}

RenderedContent render_content(const SendContext& ctx) {
  const Content& c = ctx.plan.content;
  RenderedContent out;
  // One parse of the data for every field, and none when no field has a variable.
  std::optional<nlohmann::json> data;
  auto render = [&](const std::string& tmpl) -> std::string {
    if (tmpl.find_first_of("{}") == std::string::npos) return tmpl;
    if (!data) data = nlohmann::json::parse(ctx.notification.data_json, nullptr, false);
    return render_with(tmpl, *data);
  };
  out.subject = render(c.subject);
  out.html = render(c.html);
  out.title = render(c.title);
  out.image = render(c.image);
  if (!c.data_json.empty()) {
    // Checked at the plan's intake as an object of strings; anything else is skipped here.
    const auto templates = nlohmann::json::parse(c.data_json, nullptr, false);
    if (templates.is_object()) {
      for (auto it = templates.begin(); it != templates.end(); ++it) {
        if (it.value().is_string()) out.data.emplace_back(it.key(), render(it.value().get_ref<const std::string&>()));
      }
    }
  }
  return out;
}

void append_push_alert(std::string& body, const std::string& data_json, const std::string& title,
                       const std::string& text) {
  if (!title.empty()) {
    body += R"("title":)";
    detail::append_json_string(body, title);
    body += ',';
  } else if (data_json.find("\"title\"") != std::string::npos) {
    const auto data = nlohmann::json::parse(data_json, nullptr, false);
    if (data.is_object()) {
      auto t = data.find("title");
      if (t != data.end() && t->is_string()) {
        body += R"("title":)";
        detail::append_json_string(body, t->get_ref<const std::string&>());
        body += ',';
      }
    }
  }
  body += R"("body":)";
  detail::append_json_string(body, text);
}

http::Request herald_json_post(const ProviderConfig& c, std::string url, const SendContext& ctx) {
  http::Request req;
  req.method = "POST";
  req.url = std::move(url);
  req.timeout = std::chrono::milliseconds(c.timeout_ms);
  const Digits id(ctx.notification.id);
  req.body = message_body(ctx, id);
  req.headers.reserve(5 + c.headers.size());
  req.headers.emplace_back("Content-Type: application/json");
  req.headers.push_back(text_and_number("X-Herald-Id: ", id));
  req.headers.push_back(text_and_number("X-Herald-Attempt: ", Digits(ctx.attempt)));
  // The same key on every attempt lets the receiver drop a resend it already has.
  req.headers.push_back(text_and_number("Idempotency-Key: herald-", id));
  if (ctx.in_doubt) req.headers.emplace_back("X-Herald-In-Doubt: 1");
  for (const auto& [k, v] : c.headers) req.headers.emplace_back(k + ": " + v);
  return req;
}

Id callback_hid(const InboundRequest& r) {
  std::string_view query = r.query;
  if (query.empty()) {
    if (const auto q = r.url.find('?'); q != std::string::npos) query = std::string_view(r.url).substr(q + 1);
  }
  for (const auto& [k, v] : crypto::form_decode(query)) {
    if (k != "hid") continue;
    Id id = 0;
    auto [ptr, ec] = std::from_chars(v.data(), v.data() + v.size(), id);
    return ec == std::errc() && ptr == v.data() + v.size() && id > 0 ? id : 0;
  }
  return 0;
}

std::vector<Receipt> parse_json_receipts(const InboundRequest& r) {
  std::vector<Receipt> out = herald_signature::parse_receipts(r.body);
  if (out.size() == 1) {
    if (const Id hid = callback_hid(r); hid != 0) out.front().notification_id = hid;
  }
  return out;
}

}  // namespace herald::adapters
