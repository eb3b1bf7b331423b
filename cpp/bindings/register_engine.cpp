#include "pybind.hpp"

#include "log_forwarder.hpp"
#include "notification_convert.hpp"
#include "provider_convert.hpp"
#include "rule_router.hpp"

#include <chrono>
#include <cstdint>

#include <pybind11/functional.h>

#include "herald/clock.hpp"
#include "herald/engine.hpp"
#include "herald/errors.hpp"

namespace herald::bindings {

namespace {

/// Owns the engine. Why a holder: destroying the engine joins its loop thread, which may be
/// waiting for the GIL inside the router, so the GIL must be released around the destruction.
///
/// close() does not destroy the engine: another thread may be inside one of its calls (with the
/// GIL released). Engine::close() waits for those calls (its call gate) and refuses later ones
/// with EngineClosed; the engine itself goes when the Python object does, when no call can be
/// inside.
struct PyEngine {
  std::unique_ptr<LogForwarder> log = std::make_unique<LogForwarder>();
  std::unique_ptr<Engine> engine;
  bool closed = false;

  Engine& get() {
    if (!engine || closed) throw EngineClosed("engine is closed");
    return *engine;
  }
  void close() {
    if (!engine || closed) return;
    closed = true;
    py::gil_scoped_release release;
    engine->close();
    log->stop();  // after the engine's last record ("engine closed")
  }
  ~PyEngine() {
    if (engine) {
      py::gil_scoped_release release;
      engine.reset();
    }
    log->stop();
  }
};

/// A duration option in milliseconds from 0 (or `min`) to `max`.
std::chrono::milliseconds to_ms(py::handle value, const char* field, std::int64_t min, std::int64_t max) {
  return std::chrono::milliseconds(to_int(value, field, min, max, ErrorKind::config));
}

}  // namespace

Engine& core_engine(py::handle engine) { return py::cast<PyEngine&>(engine).get(); }

void register_engine(py::module_& m) {
  py::class_<SendResult>(m, "Receipt", "What send() answers.")
      .def_readonly("id", &SendResult::id)
      .def_property_readonly("state", [](const SendResult& r) { return std::string(to_string(r.state)); })
      .def_readonly("duplicate", &SendResult::duplicate)
      .def("__repr__", [](const SendResult& r) {
        return "Receipt(id=" + std::to_string(r.id) + ", state='" + std::string(to_string(r.state)) +
               "', duplicate=" + (r.duplicate ? "True" : "False") + ")";
      });

  py::class_<PyEngine>(m, "Engine")
      .def(py::init([](const py::object& data_dir, const py::object& durability, const py::object& providers,
                       py::object route_batch, const py::object& route_batch_size,
                       const py::object& max_attempts_per_provider, const py::object& retry_base_ms,
                       const py::object& retry_max_ms, const py::object& seed, const py::object& close_timeout_ms,
                       const py::object& log_segment_bytes, const py::object& receipts, const py::object& public_url,
                       const py::object& reconcile_after_ms, const py::object& reconcile_interval_ms,
                       const py::object& retention_max_age_ms, const py::object& retention_max_db_bytes,
                       const py::object& retention_log_max_age_ms, const py::object& retention_log_max_bytes,
                       const py::object& retention_interval_ms, const py::object& store_retry_max_ms,
                       const py::object& clock) {
             // Every option is range-checked here (the same ranges as herald.Engine, in seconds there).
             constexpr auto config = ErrorKind::config;
             constexpr std::int64_t day_ms = 86'400'000;
             EngineOptions o;
             const std::string dir = to_text(data_dir, "data_dir", config);
             if (dir.empty() || dir.find('\0') != std::string::npos) {
               throw ConfigError("data_dir", "must be a non-empty path without NUL characters");
             }
             o.data_dir = dir;
             const std::string mode = to_text(durability, "durability", config);
             if (mode == "process") {
               o.durability = Durability::process;
             } else if (mode == "fsync") {
               o.durability = Durability::fsync;
             } else {
               throw ConfigError("durability", "must be 'process' or 'fsync' (got '" + mode + "')");
             }
             if (!PyList_Check(providers.ptr())) throw ConfigError("providers", "must be a list of dicts");
             std::size_t index = 0;
             for (py::handle p : providers) o.providers.push_back(to_provider(p, index++));
             if (!PyCallable_Check(route_batch.ptr())) throw ConfigError("route_batch", "must be callable");
             o.route_batch = static_cast<std::size_t>(to_int(route_batch_size, "route_batch_size", 1, 65'536, config));
             o.retry.max_attempts_per_provider =
                 static_cast<int>(to_int(max_attempts_per_provider, "max_attempts_per_provider", 1, 100, config));
             o.retry.base_ms = to_ms(retry_base_ms, "retry_base_ms", 0, 3'600'000).count();
             o.retry.max_ms = to_ms(retry_max_ms, "retry_max_ms", 0, day_ms).count();
             o.seed = to_uint64(seed, "seed", config);
             o.close_timeout = to_ms(close_timeout_ms, "close_timeout_ms", 0, day_ms);
             o.log_segment_bytes = to_int(log_segment_bytes, "log_segment_bytes", 4096, std::int64_t{1} << 32, config);
             o.receipts_listen = to_text(receipts, "receipts", config);
             o.public_url = to_text(public_url, "public_url", config);
             for (const auto& [name, text] : {std::pair{"receipts", &o.receipts_listen}, {"public_url", &o.public_url}}) {
               if (text->find('\0') != std::string::npos) throw ConfigError(name, "must not contain a NUL character");
             }
             o.reconcile_after = to_ms(reconcile_after_ms, "reconcile_after_ms", 0, 30 * day_ms);
             o.reconcile_interval = to_ms(reconcile_interval_ms, "reconcile_interval_ms", 1, day_ms);
             o.retention = to_retention(retention_max_age_ms, retention_max_db_bytes, retention_log_max_age_ms,
                                        retention_log_max_bytes, retention_interval_ms);
             o.store_retry_max = to_ms(store_retry_max_ms, "store_retry_max_ms", 1, 3'600'000);
             if (!clock.is_none()) {
               if (!py::isinstance<ManualClock>(clock)) throw ConfigError("clock", "must be a herald.ManualClock or None");
               o.clock = clock.cast<std::shared_ptr<ManualClock>>();
             }
             auto router = make_rule_router(std::move(route_batch));
             auto holder = std::make_unique<PyEngine>();
             o.log = holder->log->sink();
             // Why release: start-up reads the store and starts threads; nothing here needs Python.
             py::gil_scoped_release release;
             try {
               holder->engine = std::make_unique<Engine>(std::move(o), std::move(router));
             } catch (const Error&) {
               throw;
             } catch (const std::runtime_error& e) {
               // A listener or file the OS refused (e.g. a receipts host that does not resolve):
               // still a herald error, with the OS's reason.
               throw Error(std::string("the engine could not start: ") + e.what());
             }
             return holder;
           }),
           py::arg("data_dir"), py::arg("durability"), py::arg("providers"), py::arg("route_batch"),
           py::arg("route_batch_size") = 512, py::arg("max_attempts_per_provider") = 3, py::arg("retry_base_ms") = 200,
           py::arg("retry_max_ms") = 60000, py::arg("seed") = 0, py::arg("close_timeout_ms") = 10000,
           py::arg("log_segment_bytes") = 64 << 20, py::arg("receipts") = py::str(""), py::arg("public_url") = py::str(""),
           py::arg("reconcile_after_ms") = 600000, py::arg("reconcile_interval_ms") = 30000,
           py::arg("retention_max_age_ms") = std::int64_t{7} * 86'400'000,
           py::arg("retention_max_db_bytes") = std::int64_t{2} << 30,
           py::arg("retention_log_max_age_ms") = std::int64_t{7} * 86'400'000,
           py::arg("retention_log_max_bytes") = std::int64_t{1} << 30, py::arg("retention_interval_ms") = 60'000,
           py::arg("store_retry_max_ms") = 5'000, py::arg("clock") = py::none())
      .def("send",
           [](PyEngine& self, const py::dict& fields) {
             Engine& engine = self.get();
             FieldNames names;
             names.start_item(-1);
             Notification n = to_notification(fields, names, engine.now_ms());
             // Most sends end in the intake journal without waiting: keeping the GIL for those
             // spares a hand-over of it per call, which many sending threads pay in turns.
             if (auto quick = engine.send_if_quick(n)) return *quick;
             // Why release: the call waits for the store's commit; the loop may need the GIL meanwhile.
             py::gil_scoped_release release;
             return engine.send(std::move(n));
           },
           py::arg("fields"))
      .def("send_many",
           [](PyEngine& self, const py::list& items) {
             Engine& engine = self.get();
             const std::int64_t now = engine.now_ms();
             std::vector<Notification> batch;
             batch.reserve(items.size());
             FieldNames names;
             for (std::size_t i = 0; i < items.size(); ++i) {
               py::handle item = items[i];
               names.start_item(static_cast<std::ptrdiff_t>(i));
               if (!py::isinstance<py::dict>(item)) {
                 const std::string prefix = names.prefix();
                 throw ValidationError(prefix.substr(0, prefix.size() - 1), "must be a dict");
               }
               batch.push_back(to_notification(py::reinterpret_borrow<py::dict>(item), names, now));
             }
             py::gil_scoped_release release;  // as in send()
             return engine.send_many(std::move(batch));
           },
           py::arg("notifications"))
      .def("status",
           [](PyEngine& self, Id id) -> py::object {
             std::optional<StoredNotification> s;
             {
               py::gil_scoped_release release;
               s = self.get().status(id);
             }
             if (!s) return py::none();
             return status_dict(*s);
           },
           py::arg("id"))
      .def("trace",
           [](PyEngine& self, Id id) {
             std::vector<Event> events;
             {
               py::gil_scoped_release release;
               events = self.get().trace(id);
             }
             py::list out;
             for (const auto& e : events) out.append(event_dict(e));
             return out;
           },
           py::arg("id"))
      .def("dead_letters",
           [](PyEngine& self, std::size_t limit) {
             std::vector<StoredNotification> rows;
             {
               py::gil_scoped_release release;
               rows = self.get().dead_letters(limit);
             }
             py::list out;
             for (const auto& r : rows) out.append(status_dict(r));
             return out;
           },
           py::arg("limit") = 1000)
      .def("retry", [](PyEngine& self, Id id) {
        Engine& e = self.get();
        py::gil_scoped_release release;
        e.retry(id);
      }, py::arg("id"))
      .def("cancel", [](PyEngine& self, Id id) {
        Engine& e = self.get();
        py::gil_scoped_release release;
        return e.cancel(id);
      }, py::arg("id"))
      .def("acknowledge", [](PyEngine& self, Id id, const py::object& channel) {
        const std::string ch = to_text(channel, "channel");
        Engine& e = self.get();
        py::gil_scoped_release release;
        e.acknowledge(id, ch);
      }, py::arg("id"), py::arg("channel"))
      .def("wait_idle", [](PyEngine& self, const py::object& timeout_s) {
        // A year at most: the product below must fit 64 bits (inf or 1e300 would not).
        const double s = to_number(timeout_s, "timeout", 0.0, 365.0 * 86'400);
        Engine& e = self.get();
        py::gil_scoped_release release;
        return e.wait_idle(std::chrono::milliseconds(static_cast<std::int64_t>(s * 1000)));
      }, py::arg("timeout_s"))
      .def("flush", [](PyEngine& self) {
        Engine& e = self.get();
        py::gil_scoped_release release;
        e.flush();
      })
      .def("stats", [](PyEngine& self) {
        EngineStats s = self.get().stats();
        py::dict d;
        d["received"] = s.received;
        d["deduplicated"] = s.deduplicated;
        d["attempts"] = s.attempts;
        d["accepted"] = s.accepted;
        d["retries"] = s.retries;
        d["failovers"] = s.failovers;
        d["expired"] = s.expired;
        d["dead_lettered"] = s.dead_lettered;
        d["cancelled"] = s.cancelled;
        d["in_doubt"] = s.in_doubt;
        d["recovered"] = s.recovered;
        d["active"] = s.active;
        d["in_flight"] = s.in_flight;
        d["suppressed"] = s.suppressed;
        d["receipts"] = s.receipts;
        d["receipts_rejected"] = s.receipts_rejected;
        d["lookups"] = s.lookups;
        d["reconciled"] = s.reconciled;
        d["batched_requests"] = s.batched_requests;
        d["pruned"] = s.pruned;
        return d;
      })
      .def("metrics",
           [](PyEngine& self) {
             Engine& e = self.get();
             py::gil_scoped_release release;  // rendered on the loop, which may wait for the GIL in a rule
             return e.metrics_text();
           })
      .def("provider_health",
           [](PyEngine& self) {
             Engine& e = self.get();
             std::vector<ProviderHealth> rows;
             {
               py::gil_scoped_release release;  // read on the loop, which may wait for the GIL in a rule
               rows = e.provider_health();
             }
             py::dict out;
             for (auto& h : rows) {
               py::str name(h.name);  // before the move: the right side of `=` is evaluated first
               out[name] = py::cast(std::move(h));
             }
             return out;
           })
      .def("health",
           [](PyEngine& self) {
             const EngineHealth h = self.get().health();
             py::dict d;
             d["closing"] = h.closing;
             d["store"] = store_health_dict(h.store);
             return d;
           })
      .def("prune",
           [](PyEngine& self) {
             Engine& e = self.get();
             PruneReport r;
             {
               py::gil_scoped_release release;  // SQLite chunks through the writer; no Python needed
               r = e.prune();
             }
             return prune_report_dict(r);
           })
      .def("declare_alert",
           [](PyEngine& self, const py::object& name_text) {
             const std::string name = to_text(name_text, "name");
             Engine& e = self.get();
             py::gil_scoped_release release;  // waits for the loop, which may wait for the GIL in a rule
             e.declare_alert(name);
           },
           py::arg("name"))
      .def("alert_changed",
           [](PyEngine& self, const py::object& name_text, bool firing, const py::object& detail_text) {
             const std::string name = to_text(name_text, "name");
             const std::string detail = to_text(detail_text, "detail");
             Engine& e = self.get();
             py::gil_scoped_release release;
             e.alert_changed(name, firing, detail);
           },
           py::arg("name"), py::arg("firing"), py::arg("detail"))
      .def("suppressions",
           [](PyEngine& self, std::size_t limit) {
             std::vector<Suppression> rows;
             {
               py::gil_scoped_release release;
               rows = self.get().suppressions(limit);
             }
             py::list out;
             for (const auto& x : rows) out.append(suppression_dict(x));
             return out;
           },
           py::arg("limit") = 10000)
      .def("unsuppress",
           [](PyEngine& self, const py::object& channel_text, const py::object& address_text) {
             const std::string channel = to_text(channel_text, "channel");
             const std::string address = to_text(address_text, "address");
             Engine& e = self.get();
             py::gil_scoped_release release;
             return e.unsuppress(channel, address);
           },
           py::arg("channel"), py::arg("address"))
      .def_property_readonly("receipts_url", [](PyEngine& self) { return self.get().receipts_url(); })
      .def_property_readonly("data_dir", [](PyEngine& self) { return self.get().data_dir().string(); })
      .def_property_readonly("closed", [](PyEngine& self) { return !self.engine || self.closed; })
      .def("close", [](PyEngine& self) { self.close(); });
}

}  // namespace herald::bindings
