#include "pybind.hpp"

#include "provider_convert.hpp"

/// A provider's configuration dict to herald::ProviderConfig: every key, text and number checked
/// (a ConfigError naming the field), secrets never echoed in a message.

#include <limits>
#include <map>
#include <string>

#include "herald/errors.hpp"

namespace herald::bindings {

namespace {

/// Ranges of the provider numbers, checked here so that no value wraps on its way into an int.
/// The same ranges as the core's validate(ProviderConfig) in provider.cpp; documented in
/// docs/providers.md.
struct IntRange {
  const char* key;
  std::int64_t min;
  std::int64_t max;
};
constexpr IntRange provider_ints[] = {{"concurrency", 1, 10'000}, {"max_attempts", 0, 100}, {"timeout_ms", 1, 600'000}};
constexpr IntRange circuit_ints[] = {{"circuit_min_attempts", 1, 1'000'000},
                                     {"circuit_window_ms", 1000, 3'600'000},
                                     {"circuit_consecutive_failures", 0, 1'000'000},
                                     {"circuit_cooldown_ms", 1, 3'600'000},
                                     {"circuit_probes", 1, 1000}};
constexpr double max_rate_per_s = 1e7;

}  // namespace

ProviderConfig to_provider(py::handle entry, std::size_t index) {
  static const char* known[] = {"name",       "kind",       "url",           "concurrency",      "max_attempts",
                                "timeout_ms", "rate_per_s", "cost_per_message", "headers", "settings",
                                "secrets", "circuit_failure_rate", "circuit_min_attempts", "circuit_window_ms",
                                "circuit_consecutive_failures", "circuit_cooldown_ms", "circuit_probes"};
  constexpr auto config = ErrorKind::config;
  const std::string at = "providers[" + std::to_string(index) + "]";
  if (!PyDict_Check(entry.ptr())) throw ConfigError(at, std::string("must be a dict (got ") + Py_TYPE(entry.ptr())->tp_name + ")");
  const auto d = py::reinterpret_borrow<py::dict>(entry);
  ProviderConfig c;
  if (PyObject* name = PyDict_GetItemString(d.ptr(), "name")) c.name = to_text(name, at + ".name", config);
  const std::string where = c.name.empty() ? at + "." : "providers." + c.name + ".";
  for (auto item : d) {
    if (!PyUnicode_Check(item.first.ptr())) throw ConfigError(where + display_text(item.first), "unknown field");
    const std::string key = display_text(item.first);
    bool ok = false;
    for (const char* k : known) ok = ok || key == k;
    if (!ok) throw ConfigError(where + key, "unknown field");
  }
  auto get = [&](const char* key) -> PyObject* { return PyDict_GetItemString(d.ptr(), key); };  // borrowed
  auto str_field = [&](const char* key) -> std::string {
    PyObject* v = get(key);
    return v == nullptr ? std::string() : to_text(v, where + key, config);
  };
  auto int_field = [&](const IntRange& range, auto fallback) -> decltype(fallback) {
    PyObject* v = get(range.key);
    if (v == nullptr) return fallback;
    return static_cast<decltype(fallback)>(to_int(v, where + range.key, range.min, range.max, config));
  };
  auto number_field = [&](const char* key, double fallback, double max) -> double {
    PyObject* v = get(key);
    return v == nullptr ? fallback : to_number(v, where + key, 0.0, max, config);
  };
  auto table_field = [&](const char* key, std::map<std::string, std::string>& out) {
    PyObject* table = get(key);
    if (table == nullptr) return;
    if (!PyDict_Check(table)) throw ConfigError(where + key, "must be a table of strings");
    for (auto item : py::reinterpret_borrow<py::dict>(table)) {
      if (!PyUnicode_Check(item.first.ptr())) throw ConfigError(where + key, "keys must be strings");
      const Py_ssize_t bad = lone_surrogate_at(item.first);
      if (bad >= 0) throw ConfigError(where + key + "." + display_text(item.first), "key " + surrogate_reason(bad));
      const std::string name = to_text(item.first, where + key, config);
      out[name] = to_text(item.second, where + key + "." + name, config);
    }
  };
  c.kind = str_field("kind");
  c.url = str_field("url");
  c.concurrency = int_field(provider_ints[0], c.concurrency);
  c.max_attempts = int_field(provider_ints[1], c.max_attempts);
  c.timeout_ms = int_field(provider_ints[2], c.timeout_ms);
  c.rate_per_s = number_field("rate_per_s", c.rate_per_s, max_rate_per_s);
  c.cost_per_message = number_field("cost_per_message", c.cost_per_message, std::numeric_limits<double>::infinity());
  c.circuit.failure_rate = number_field("circuit_failure_rate", c.circuit.failure_rate, 1.0);
  c.circuit.min_attempts = int_field(circuit_ints[0], c.circuit.min_attempts);
  c.circuit.window_ms = int_field(circuit_ints[1], c.circuit.window_ms);
  c.circuit.consecutive_failures = int_field(circuit_ints[2], c.circuit.consecutive_failures);
  c.circuit.cooldown_ms = int_field(circuit_ints[3], c.circuit.cooldown_ms);
  c.circuit.probes = int_field(circuit_ints[4], c.circuit.probes);
  table_field("headers", c.headers);
  table_field("settings", c.settings);
  table_field("secrets", c.secrets);
  return c;
}

}  // namespace herald::bindings
