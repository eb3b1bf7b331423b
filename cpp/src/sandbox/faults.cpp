// Faults: the JSON form of injected faults and its validation.
#include "herald/sandbox.hpp"

#include <cmath>
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <string>
#include <string_view>

#include "state.hpp"

namespace herald::sandbox {

using json = nlohmann::json;

namespace {

constexpr std::int64_t kMaxLatencyMs = 86'400'000;  // one day

// ---- Faults validation helpers ----------------------------------------------------------------

[[noreturn]] void bad_field(std::string_view key, std::string_view reason) {
  std::string msg = "faults.";
  msg.append(key);
  msg += ": ";
  msg.append(reason);
  throw std::invalid_argument(msg);
}

double rate_field(std::string_view key, const json& v) {
  if (!v.is_number()) bad_field(key, "must be a number between 0 and 1");
  const double d = v.get<double>();
  if (!(d >= 0.0 && d <= 1.0)) bad_field(key, "must be between 0 and 1");
  return d;
}

std::int64_t int_field(std::string_view key, const json& v) {
  if (v.is_number_unsigned()) {
    const auto u = v.get<std::uint64_t>();
    if (u > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) bad_field(key, "is too large");
    return static_cast<std::int64_t>(u);
  }
  if (!v.is_number_integer()) bad_field(key, "must be an integer");
  return v.get<std::int64_t>();
}

int status_field(std::string_view key, const json& v) {
  const std::int64_t s = int_field(key, v);
  if (s < 100 || s > 599) bad_field(key, "must be an HTTP status between 100 and 599");
  return static_cast<int>(s);
}

std::int64_t non_negative_field(std::string_view key, const json& v, std::int64_t max) {
  const std::int64_t n = int_field(key, v);
  if (n < 0 || n > max) bad_field(key, "must be between 0 and " + std::to_string(max));
  return n;
}

}  // namespace

// ---- Faults -----------------------------------------------------------------------------------

nlohmann::json Faults::to_json() const {
  return {{"error_rate", error_rate},
          {"error_status", error_status},
          {"error_code", error_code},
          {"rate_limit_rate", rate_limit_rate},
          {"retry_after_s", retry_after_s},
          {"latency_ms", latency.count()},
          {"outage_until_ms", outage_until_ms}};
}

Faults Faults::from_json(const nlohmann::json& j) {
  if (!j.is_object()) throw std::invalid_argument("faults: must be a JSON object");
  Faults f;
  bool has_until = false;
  bool has_for = false;
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& key = it.key();
    const json& v = it.value();
    if (key == "error_rate") {
      f.error_rate = rate_field(key, v);
    } else if (key == "error_status") {
      f.error_status = status_field(key, v);
    } else if (key == "error_code") {
      if (!v.is_string()) bad_field(key, "must be a string");
      f.error_code = v.get<std::string>();
    } else if (key == "rate_limit_rate") {
      f.rate_limit_rate = rate_field(key, v);
    } else if (key == "retry_after_s") {
      f.retry_after_s = static_cast<int>(non_negative_field(key, v, std::numeric_limits<int>::max()));
    } else if (key == "latency_ms") {
      if (!v.is_number()) bad_field(key, "must be a number >= 0");
      const double ms = v.get<double>();
      if (!(ms >= 0.0)) bad_field(key, "must be >= 0");
      if (ms > static_cast<double>(kMaxLatencyMs)) bad_field(key, "must be at most 86400000 (one day)");
      f.latency = std::chrono::milliseconds(std::llround(ms));
    } else if (key == "outage_until_ms") {
      f.outage_until_ms = non_negative_field(key, v, std::numeric_limits<std::int64_t>::max());
      has_until = true;
    } else if (key == "outage_for_ms") {
      const std::int64_t for_ms = non_negative_field(key, v, std::numeric_limits<std::int64_t>::max() / 2);
      f.outage_until_ms = detail::epoch_ms() + for_ms;
      has_for = true;
    } else {
      bad_field(key,
                "unknown key (known: error_rate, error_status, error_code, rate_limit_rate, retry_after_s, "
                "latency_ms, outage_until_ms, outage_for_ms)");
    }
  }
  if (has_until && has_for) bad_field("outage_for_ms", "cannot be combined with outage_until_ms");
  return f;
}

}  // namespace herald::sandbox
