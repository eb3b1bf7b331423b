#include "pybind.hpp"

#include <limits>

#include "herald/clock.hpp"
#include "herald/retention.hpp"
#include "herald/store.hpp"

namespace herald::bindings {

namespace {

constexpr std::int64_t int64_max = std::numeric_limits<std::int64_t>::max();
constexpr std::int64_t day_ms = 86'400'000;

}  // namespace

py::dict prune_report_dict(const PruneReport& r) {
  py::dict d;
  d["notifications"] = r.store.notifications;
  d["events"] = r.store.events;
  d["db_bytes"] = r.store.db_bytes;
  d["segments"] = r.segments;
  d["segment_bytes"] = r.segment_bytes;
  d["log_bytes"] = r.log_bytes;
  return d;
}

py::dict store_health_dict(const StoreHealth& h) {
  py::dict d;
  d["degraded"] = h.degraded;
  d["error"] = h.error.empty() ? py::object(py::none()) : py::object(to_py_text(h.error));
  d["since"] = h.since_ms == 0 ? py::object(py::none()) : py::object(py::float_(static_cast<double>(h.since_ms) / 1000.0));
  d["held_batches"] = h.held_batches;
  d["write_faults"] = h.write_faults;
  return d;
}

RetentionOptions to_retention(const py::object& max_age_ms, const py::object& max_db_bytes,
                              const py::object& log_max_age_ms, const py::object& log_max_bytes,
                              const py::object& interval_ms) {
  RetentionOptions r;
  const auto kind = ErrorKind::config;
  r.max_age = std::chrono::milliseconds(to_int(max_age_ms, "retention_max_age", 0, 100'000 * day_ms, kind));
  r.max_db_bytes = to_int(max_db_bytes, "retention_max_db_bytes", 0, int64_max, kind);
  r.log_max_age = std::chrono::milliseconds(to_int(log_max_age_ms, "retention_log_max_age", 0, 100'000 * day_ms, kind));
  r.log_max_bytes = to_int(log_max_bytes, "retention_log_max_bytes", 0, int64_max, kind);
  r.interval = std::chrono::milliseconds(to_int(interval_ms, "retention_interval", 0, 365 * day_ms, kind));
  return r;
}

void register_retention(py::module_& m) {
  m.def(
      "prune_data_dir",
      [](const py::object& data_dir, const py::object& max_age_ms, const py::object& max_db_bytes,
         const py::object& log_max_age_ms, const py::object& log_max_bytes) {
        const std::string dir = to_text(data_dir, "data_dir", ErrorKind::config);
        RetentionOptions limits = to_retention(max_age_ms, max_db_bytes, log_max_age_ms, log_max_bytes, py::int_(0));
        PruneReport report;
        {
          // Why release: a pass runs SQLite transactions and file deletions; nothing needs Python.
          py::gil_scoped_release release;
          Store store(dir, StoreOptions{});
          report = prune_once(store, store.log_dir(), limits, now_ms());
        }
        return prune_report_dict(report);
      },
      py::arg("data_dir"), py::arg("max_age_ms"), py::arg("max_db_bytes"), py::arg("log_max_age_ms"),
      py::arg("log_max_bytes"),
      "One retention pass over a data directory without an engine: final notifications and their events "
      "past the limits, then old log segments. Returns what it removed.");
}

}  // namespace herald::bindings
