// Request bodies to notifications: the JSON of POST /v1/notifications and /v1/notifications:batch
// parsed (integers too wide for 64 bits kept apart) and checked with the Python binding's rules and
// error texts.
#include "herald/api.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

#include "herald/errors.hpp"

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

}  // namespace

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

}  // namespace herald::api
