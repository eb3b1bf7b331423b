#include "pybind.hpp"

#include <chrono>

#include <pybind11/functional.h>

#include "herald/clock.hpp"
#include "herald/engine.hpp"
#include "herald/errors.hpp"

namespace herald::bindings {

namespace {

/// Calls the Python routing function in batches.
/// GIL contract: route() runs on the engine loop thread without the GIL and takes it once per
/// batch; the destructor takes it to release the callable.
class PyRouter final : public Router {
 public:
  explicit PyRouter(py::object route_batch) : route_batch_(std::move(route_batch)) {}
  ~PyRouter() override {
    if (Py_IsInitialized() == 0) {
      route_batch_.release();  // interpreter gone: nothing left to decref into
      return;
    }
    py::gil_scoped_acquire gil;
    route_batch_ = py::object();
  }

  std::vector<RouteResult> route(const std::vector<const Notification*>& batch) override {
    py::gil_scoped_acquire gil;
    // Why keep the thread state: otherwise every batch creates and frees one for the loop thread
    // (a 16 KiB mmap/munmap pair, ~17% of the CPU when notifications trickle in one at a time).
    // It lives until the interpreter clears it: one per engine.
    if (!thread_state_kept_) {
      gil.inc_ref();
      thread_state_kept_ = true;
    }
    std::vector<RouteResult> out(batch.size());
    try {
      py::list items(batch.size());
      for (std::size_t i = 0; i < batch.size(); ++i) items[i] = py::cast(*batch[i]);
      py::object answers = route_batch_(items);
      py::list list = answers.cast<py::list>();
      if (list.size() != batch.size()) throw Error("route_batch returned a list of the wrong length");
      for (std::size_t i = 0; i < batch.size(); ++i) {
        py::handle a = list[i];
        RouteResult& r = out[i];
        if (py::isinstance<py::str>(a)) {
          r.error = a.cast<std::string>();
          continue;
        }
        // A plan: any object with channel, providers and template attributes (herald.Plan).
        r.plan.channel = a.attr("channel").cast<std::string>();
        r.plan.providers = a.attr("providers").cast<std::vector<std::string>>();
        py::object tmpl = a.attr("template");
        if (!tmpl.is_none()) r.plan.template_text = tmpl.cast<std::string>();
        if (py::hasattr(a, "batch")) r.plan.batch = a.attr("batch").cast<bool>();
        r.ok = true;
      }
    } catch (py::error_already_set& e) {
      const std::string text = std::string("routing failed: ") + e.what();
      for (auto& r : out) r = RouteResult{false, {}, text};
    } catch (const std::exception& e) {
      const std::string text = std::string("routing failed: ") + e.what();
      for (auto& r : out) r = RouteResult{false, {}, text};
    }
    return out;
  }

 private:
  py::object route_batch_;
  bool thread_state_kept_ = false;  ///< loop thread only
};

/// Owns the engine. Why a holder: destroying the engine joins its loop thread, which may be
/// waiting for the GIL inside the router, so the GIL must be released around the destruction.
struct PyEngine {
  std::unique_ptr<Engine> engine;

  Engine& get() {
    if (!engine) throw EngineClosed("engine is closed");
    return *engine;
  }
  void close() {
    if (!engine) return;
    py::gil_scoped_release release;
    engine->close();
  }
  ~PyEngine() {
    if (!engine) return;
    py::gil_scoped_release release;
    engine.reset();
  }
};

/// The keys of the keyword form, interned once: lookups then skip building a str per call.
struct FieldKeys {
  PyObject* type = PyUnicode_InternFromString("type");
  PyObject* recipient = PyUnicode_InternFromString("recipient");
  PyObject* data = PyUnicode_InternFromString("data");
  PyObject* priority = PyUnicode_InternFromString("priority");
  PyObject* idempotency_key = PyUnicode_InternFromString("idempotency_key");
  PyObject* ordering_key = PyUnicode_InternFromString("ordering_key");
  PyObject* send_at = PyUnicode_InternFromString("send_at");
  PyObject* expires_at = PyUnicode_InternFromString("expires_at");
  PyObject* tenant = PyUnicode_InternFromString("tenant");
  PyObject* id = PyUnicode_InternFromString("id");
};

const FieldKeys& keys() {
  static const auto* k = new FieldKeys();  // leaked on purpose: outlives the interpreter's teardown
  return *k;
}

/// Borrowed value of `key`, or nullptr when absent or None.
PyObject* field(PyObject* d, PyObject* key) {
  PyObject* v = PyDict_GetItemWithError(d, key);
  if (v == nullptr && PyErr_Occurred() != nullptr) throw py::error_already_set();
  return v == Py_None ? nullptr : v;
}

std::string get_str(PyObject* d, PyObject* key, const std::string& prefix, bool required) {
  PyObject* v = field(d, key);
  const char* name = PyUnicode_AsUTF8(key);
  if (v == nullptr) {
    if (required) throw ValidationError(prefix + name, "is required");
    return {};
  }
  if (!PyUnicode_Check(v)) throw ValidationError(prefix + name, "must be a string");
  Py_ssize_t size = 0;
  const char* text = PyUnicode_AsUTF8AndSize(v, &size);
  if (text == nullptr) throw py::error_already_set();
  return {text, static_cast<std::size_t>(size)};
}

/// One notification from the keyword form Python hands over; names fields as the caller wrote them.
Notification to_notification(const py::dict& dict, const std::string& prefix) {
  const FieldKeys& k = keys();
  PyObject* d = dict.ptr();
  const PyObject* const fields[] = {k.type,         k.recipient, k.data,       k.priority, k.idempotency_key,
                                    k.ordering_key, k.send_at,   k.expires_at, k.tenant};
  Py_ssize_t known = 0;
  for (const PyObject* key : fields) known += PyDict_Contains(d, const_cast<PyObject*>(key)) == 1 ? 1 : 0;
  if (known != PyDict_Size(d)) {  // rare: find and name the stranger
    PyObject* key = nullptr;
    PyObject* value = nullptr;
    Py_ssize_t pos = 0;
    while (PyDict_Next(d, &pos, &key, &value)) {
      bool ok = false;
      for (const PyObject* f : fields) ok = ok || key == f || PyObject_RichCompareBool(key, const_cast<PyObject*>(f), Py_EQ) == 1;
      if (!ok) throw ValidationError(prefix + py::str(key).cast<std::string>(), "unknown field");
    }
  }
  Notification n;
  n.type = get_str(d, k.type, prefix, true);
  std::string tenant = get_str(d, k.tenant, prefix, false);
  if (!tenant.empty()) n.tenant = std::move(tenant);
  PyObject* r = field(d, k.recipient);
  if (r == nullptr) throw ValidationError(prefix + "recipient", "is required");
  if (PyUnicode_Check(r)) {
    n.recipient_id = py::handle(r).cast<std::string>();
    n.recipient_json = "{\"id\":" + to_json(r, prefix + "recipient") + "}";
  } else if (PyDict_Check(r)) {
    PyObject* rid = field(r, k.id);
    if (rid == nullptr) throw ValidationError(prefix + "recipient.id", "is required");
    if (!PyUnicode_Check(rid)) throw ValidationError(prefix + "recipient.id", "must be a string");
    n.recipient_id = py::handle(rid).cast<std::string>();
    n.recipient_json = to_json(r, prefix + "recipient");
  } else {
    throw ValidationError(prefix + "recipient", "must be a user id (str) or a dict with an 'id'");
  }
  if (PyObject* data = field(d, k.data)) {
    if (!PyDict_Check(data)) throw ValidationError(prefix + "data", "must be a dict");
    n.data_json = to_json(data, prefix + "data");
  }
  std::string priority = get_str(d, k.priority, prefix, false);
  if (!priority.empty()) {
    try {
      n.priority = parse_priority(priority);
    } catch (const ValidationError& e) {
      throw ValidationError(prefix + "priority", std::string(e.what()).substr(std::string("priority: ").size()));
    }
  }
  n.idempotency_key = get_str(d, k.idempotency_key, prefix, false);
  n.ordering_key = get_str(d, k.ordering_key, prefix, false);
  if (PyObject* v = field(d, k.send_at)) n.send_at_ms = to_epoch_ms(v, prefix + "send_at");
  if (PyObject* v = field(d, k.expires_at)) n.expires_at_ms = to_epoch_ms(v, prefix + "expires_at");
  return n;
}

py::object ms_to_seconds(std::int64_t ms) {
  if (ms == 0) return py::none();
  return py::float_(static_cast<double>(ms) / 1000.0);
}

py::dict status_dict(const StoredNotification& s) {
  const Notification& n = s.notification;
  const DeliveryState& d = s.delivery;
  py::dict out;
  out["id"] = n.id;
  out["state"] = std::string(to_string(d.state));
  out["tenant"] = n.tenant;
  out["type"] = n.type;
  out["recipient_id"] = n.recipient_id;
  out["priority"] = std::string(to_string(n.priority));
  out["attempts"] = d.attempt;
  out["provider"] = d.provider.empty() ? py::object(py::none()) : py::object(py::str(d.provider));
  out["provider_message_id"] =
      d.provider_message_id.empty() ? py::object(py::none()) : py::object(py::str(d.provider_message_id));
  out["last_error"] = d.last_error.empty() ? py::object(py::none()) : py::object(py::str(d.last_error));
  out["in_doubt"] = d.in_doubt;
  out["idempotency_key"] = n.idempotency_key.empty() ? py::object(py::none()) : py::object(py::str(n.idempotency_key));
  out["ordering_key"] = n.ordering_key.empty() ? py::object(py::none()) : py::object(py::str(n.ordering_key));
  out["created_at"] = ms_to_seconds(n.created_at_ms);
  out["updated_at"] = ms_to_seconds(s.updated_at_ms);
  out["send_at"] = ms_to_seconds(n.send_at_ms);
  out["expires_at"] = ms_to_seconds(n.expires_at_ms);
  out["next_attempt_at"] = ms_to_seconds(d.state == State::retry_scheduled ? d.next_at_ms : 0);
  auto text_or_none = [](const std::string& v) { return v.empty() ? py::object(py::none()) : py::object(py::str(v)); };
  out["channel"] = text_or_none(d.channel);
  out["address"] = text_or_none(d.address);
  out["receipt"] = text_or_none(d.receipt);
  out["receipt_at"] = ms_to_seconds(d.receipt_at_ms);
  out["cost"] = d.cost;
  return out;
}

py::dict event_dict(const Event& e) {
  py::dict out;
  out["id"] = e.notification_id;
  out["event"] = e.kind;
  out["at"] = static_cast<double>(e.ts_us) / 1e6;
  out["attempt"] = e.attempt;
  out["provider"] = e.provider.empty() ? py::object(py::none()) : py::object(py::str(e.provider));
  out["latency_ms"] = e.latency_us < 0 ? py::object(py::none()) : py::object(py::float_(e.latency_us / 1000.0));
  out["http_status"] = e.http_status == 0 ? py::object(py::none()) : py::object(py::int_(e.http_status));
  out["detail"] = e.detail.empty() ? py::object(py::none()) : py::object(py::str(e.detail));
  return out;
}

ProviderConfig to_provider(const py::dict& d) {
  static const char* known[] = {"name",       "kind",       "url",           "concurrency",      "max_attempts",
                                "timeout_ms", "rate_per_s", "cost_per_message", "headers", "settings",
                                "secrets"};
  ProviderConfig c;
  c.name = d.contains("name") ? py::str(d["name"]).cast<std::string>() : std::string();
  const std::string where = "providers." + (c.name.empty() ? std::string("?") : c.name) + ".";
  for (auto item : d) {
    const std::string key = py::str(item.first);
    bool ok = false;
    for (const char* k : known) ok = ok || key == k;
    if (!ok) throw ConfigError(where + key + ": unknown field");
  }
  auto str_field = [&](const char* key) -> std::string {
    if (!d.contains(key)) return {};
    if (!py::isinstance<py::str>(d[key])) throw ConfigError(where + key + ": must be a string");
    return d[key].cast<std::string>();
  };
  auto int_field = [&](const char* key, std::int64_t fallback) -> std::int64_t {
    if (!d.contains(key)) return fallback;
    py::handle v = d[key];
    if (!py::isinstance<py::int_>(v) || py::isinstance<py::bool_>(v)) {
      throw ConfigError(where + key + ": must be an integer");
    }
    return v.cast<std::int64_t>();
  };
  auto number_field = [&](const char* key, double fallback) -> double {
    if (!d.contains(key)) return fallback;
    py::handle v = d[key];
    if (!(py::isinstance<py::int_>(v) || py::isinstance<py::float_>(v)) || py::isinstance<py::bool_>(v)) {
      throw ConfigError(where + key + ": must be a number");
    }
    return v.cast<double>();
  };
  // Secrets are named in errors by key only; their values never reach a message.
  auto table_field = [&](const char* key, std::map<std::string, std::string>& out) {
    if (!d.contains(key)) return;
    if (!py::isinstance<py::dict>(d[key])) throw ConfigError(where + key + ": must be a table of strings");
    for (auto item : d[key].cast<py::dict>()) {
      const std::string name = py::str(item.first);
      if (!py::isinstance<py::str>(item.second)) throw ConfigError(where + key + "." + name + ": must be a string");
      out[name] = item.second.cast<std::string>();
    }
  };
  c.kind = str_field("kind");
  c.url = str_field("url");
  c.concurrency = static_cast<int>(int_field("concurrency", c.concurrency));
  c.max_attempts = static_cast<int>(int_field("max_attempts", c.max_attempts));
  c.timeout_ms = int_field("timeout_ms", c.timeout_ms);
  c.rate_per_s = number_field("rate_per_s", c.rate_per_s);
  c.cost_per_message = number_field("cost_per_message", c.cost_per_message);
  table_field("headers", c.headers);
  table_field("settings", c.settings);
  table_field("secrets", c.secrets);
  return c;
}

}  // namespace

void register_engine(py::module_& m) {
  py::class_<Notification>(m, "Notification", "A notification as a rule sees it (read-only).")
      .def_readonly("id", &Notification::id)
      .def_readonly("tenant", &Notification::tenant)
      .def_readonly("type", &Notification::type)
      .def_readonly("recipient_id", &Notification::recipient_id)
      .def_property_readonly("recipient", [](const Notification& n) { return from_json_text(n.recipient_json); })
      .def_property_readonly("data", [](const Notification& n) { return from_json_text(n.data_json); })
      .def_property_readonly("priority", [](const Notification& n) { return std::string(to_string(n.priority)); })
      .def_property_readonly("idempotency_key",
                             [](const Notification& n) -> py::object {
                               return n.idempotency_key.empty() ? py::object(py::none()) : py::str(n.idempotency_key);
                             })
      .def_property_readonly("ordering_key",
                             [](const Notification& n) -> py::object {
                               return n.ordering_key.empty() ? py::object(py::none()) : py::str(n.ordering_key);
                             })
      .def_property_readonly("send_at", [](const Notification& n) { return ms_to_seconds(n.send_at_ms); })
      .def_property_readonly("expires_at", [](const Notification& n) { return ms_to_seconds(n.expires_at_ms); })
      .def_property_readonly("created_at", [](const Notification& n) { return ms_to_seconds(n.created_at_ms); })
      .def("__repr__", [](const Notification& n) {
        return "<Notification " + std::to_string(n.id) + " " + n.type + " to " + n.recipient_id + ">";
      });

  py::class_<SendResult>(m, "Receipt", "What send() answers.")
      .def_readonly("id", &SendResult::id)
      .def_property_readonly("state", [](const SendResult& r) { return std::string(to_string(r.state)); })
      .def_readonly("duplicate", &SendResult::duplicate)
      .def("__repr__", [](const SendResult& r) {
        return "Receipt(id=" + std::to_string(r.id) + ", state='" + std::string(to_string(r.state)) +
               "', duplicate=" + (r.duplicate ? "True" : "False") + ")";
      });

  py::class_<PyEngine>(m, "Engine")
      .def(py::init([](const std::string& data_dir, const std::string& durability, const py::list& providers,
                       py::object route_batch, std::size_t route_batch_size, int max_attempts_per_provider,
                       std::int64_t retry_base_ms, std::int64_t retry_max_ms, std::uint64_t seed,
                       std::int64_t close_timeout_ms, std::int64_t log_segment_bytes, const std::string& receipts,
                       const std::string& public_url, std::int64_t reconcile_after_ms,
                       std::int64_t reconcile_interval_ms) {
             EngineOptions o;
             o.data_dir = data_dir;
             if (durability == "process") {
               o.durability = Durability::process;
             } else if (durability == "fsync") {
               o.durability = Durability::fsync;
             } else {
               throw ConfigError("durability: must be 'process' or 'fsync' (got '" + durability + "')");
             }
             for (auto p : providers) {
               if (!py::isinstance<py::dict>(p)) throw ConfigError("providers: each provider must be a dict");
               o.providers.push_back(to_provider(p.cast<py::dict>()));
             }
             o.route_batch = route_batch_size;
             o.retry.max_attempts_per_provider = max_attempts_per_provider;
             o.retry.base_ms = retry_base_ms;
             o.retry.max_ms = retry_max_ms;
             o.seed = seed;
             o.close_timeout = std::chrono::milliseconds(close_timeout_ms);
             o.log_segment_bytes = log_segment_bytes;
             o.receipts_listen = receipts;
             o.public_url = public_url;
             if (reconcile_after_ms < 0) throw ConfigError("reconcile_after: must be 0 or more");
             if (reconcile_interval_ms < 1) throw ConfigError("reconcile_interval: must be positive");
             o.reconcile_after = std::chrono::milliseconds(reconcile_after_ms);
             o.reconcile_interval = std::chrono::milliseconds(reconcile_interval_ms);
             auto router = std::make_shared<PyRouter>(std::move(route_batch));
             auto holder = std::make_unique<PyEngine>();
             // Why release: start-up reads the store and starts threads; nothing here needs Python.
             py::gil_scoped_release release;
             holder->engine = std::make_unique<Engine>(std::move(o), std::move(router));
             return holder;
           }),
           py::arg("data_dir"), py::arg("durability"), py::arg("providers"), py::arg("route_batch"),
           py::arg("route_batch_size") = 512, py::arg("max_attempts_per_provider") = 3, py::arg("retry_base_ms") = 200,
           py::arg("retry_max_ms") = 60000, py::arg("seed") = 0, py::arg("close_timeout_ms") = 10000,
           py::arg("log_segment_bytes") = 64 << 20, py::arg("receipts") = "", py::arg("public_url") = "",
           py::arg("reconcile_after_ms") = 600000, py::arg("reconcile_interval_ms") = 30000)
      .def("send",
           [](PyEngine& self, const py::dict& fields) {
             Notification n = to_notification(fields, "");
             Engine& engine = self.get();
             // Why release: the call waits for the store's commit; the loop may need the GIL meanwhile.
             py::gil_scoped_release release;
             return engine.send(std::move(n));
           })
      .def("send_many",
           [](PyEngine& self, const py::list& items) {
             std::vector<Notification> batch;
             batch.reserve(items.size());
             for (std::size_t i = 0; i < items.size(); ++i) {
               py::handle item = items[i];
               const std::string prefix = "notifications[" + std::to_string(i) + "].";
               if (!py::isinstance<py::dict>(item)) throw ValidationError(prefix.substr(0, prefix.size() - 1), "must be a dict");
               batch.push_back(to_notification(py::reinterpret_borrow<py::dict>(item), prefix));
             }
             Engine& engine = self.get();
             py::gil_scoped_release release;  // as in send()
             return engine.send_many(std::move(batch));
           })
      .def("status",
           [](PyEngine& self, Id id) -> py::object {
             std::optional<StoredNotification> s;
             {
               py::gil_scoped_release release;
               s = self.get().status(id);
             }
             if (!s) return py::none();
             return status_dict(*s);
           })
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
           })
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
      })
      .def("cancel", [](PyEngine& self, Id id) {
        Engine& e = self.get();
        py::gil_scoped_release release;
        return e.cancel(id);
      })
      .def("wait_idle", [](PyEngine& self, double timeout_s) {
        Engine& e = self.get();
        py::gil_scoped_release release;
        return e.wait_idle(std::chrono::milliseconds(static_cast<std::int64_t>(timeout_s * 1000)));
      })
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
        return d;
      })
      .def("suppressions",
           [](PyEngine& self, std::size_t limit) {
             std::vector<Suppression> rows;
             {
               py::gil_scoped_release release;
               rows = self.get().suppressions(limit);
             }
             py::list out;
             for (const auto& x : rows) {
               py::dict d;
               d["channel"] = x.channel;
               d["address"] = x.address;
               d["reason"] = x.reason;
               d["detail"] = x.detail;
               d["provider"] = x.provider;
               d["notification_id"] = x.notification_id;
               d["at"] = ms_to_seconds(x.at_ms);
               out.append(d);
             }
             return out;
           },
           py::arg("limit") = 10000)
      .def("unsuppress",
           [](PyEngine& self, const std::string& channel, const std::string& address) {
             Engine& e = self.get();
             py::gil_scoped_release release;
             return e.unsuppress(channel, address);
           })
      .def_property_readonly("receipts_url", [](PyEngine& self) { return self.get().receipts_url(); })
      .def_property_readonly("data_dir", [](PyEngine& self) { return self.get().data_dir().string(); })
      .def_property_readonly("closed", [](PyEngine& self) { return !self.engine; })
      .def("close", [](PyEngine& self) {
        self.close();
        py::gil_scoped_release release;
        self.engine.reset();
      });
}

}  // namespace herald::bindings
