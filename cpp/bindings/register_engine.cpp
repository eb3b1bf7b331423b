#include "pybind.hpp"

#include "health_view.hpp"
#include "log_forwarder.hpp"
#include "notification_convert.hpp"
#include "provider_convert.hpp"

#include <array>
#include <chrono>
#include <cstdint>

#include <pybind11/functional.h>

#include "herald/clock.hpp"
#include "herald/engine.hpp"
#include "herald/errors.hpp"

namespace herald::bindings {

namespace {

/// A notification as a rule sees it. It reads the loop's own Notification while the rule runs
/// (no copy of its strings per call); a rule that keeps it past the call gets a copy of its own
/// first (PyRouter::call: keep()), so it never points into a Delivery that is gone.
class RuleNotification {
 public:
  explicit RuleNotification(const Notification* n) : n_(n) {}
  [[nodiscard]] const Notification& get() const { return *n_; }
  void keep() {
    if (own_) return;
    own_ = std::make_unique<Notification>(*n_);
    n_ = own_.get();
  }
  /// Only for a view no one else can reach (PyRouter::View): it shows another notification.
  void point_at(const Notification* n) { n_ = n; }

 private:
  const Notification* n_;
  std::unique_ptr<Notification> own_;
};

/// Calls the Python routing function in batches.
/// GIL contract: route() runs on the engine loop thread without the GIL and takes it once per
/// batch; the destructor takes it to release the callable.
class PyRouter final : public Router {
 public:
  explicit PyRouter(py::object route_batch)
      : route_batch_(std::move(route_batch)),
        // RuleSet.router()'s function takes the providers' health as its second argument; another
        // callable is called with the batch alone.
        with_health_(py::getattr(route_batch_, "__herald_health__", py::bool_(false)).ptr() == Py_True) {}
  ~PyRouter() override {
    if (Py_IsInitialized() == 0) {
      route_batch_.release();  // interpreter gone: nothing left to decref into
      wire_name_.release();
      for (auto& c : converted_) c.wire.release();
      for (auto& v : views_) v.obj.release();
      return;
    }
    py::gil_scoped_acquire gil;
    route_batch_ = py::object();  // every Python reference goes here, with the GIL
    wire_name_ = py::object();
    for (auto& c : converted_) c.wire = py::object();
    views_.clear();
  }

  std::vector<RouteResult> route(const std::vector<const Notification*>& batch) override { return call(batch, nullptr); }
  std::vector<RouteResult> route_with_health(const std::vector<const Notification*>& batch,
                                             const ProviderHealthSource& health) override {
    return call(batch, &health);
  }

 private:
  std::vector<RouteResult> call(const std::vector<const Notification*>& batch, const ProviderHealthSource* health) {
    py::gil_scoped_acquire gil;
    // Why keep the thread state: otherwise every batch creates and frees one for the loop thread
    // (a 16 KiB mmap/munmap pair, ~17% of the CPU when notifications trickle in one at a time).
    // It lives until the interpreter clears it: one per engine.
    if (!thread_state_kept_) {
      gil.inc_ref();
      thread_state_kept_ = true;
    }
    std::vector<RouteResult> out(batch.size());
    // The rule's views of the notifications: whichever outlives the call (kept by the rule, in
    // the list it kept, in a traceback, or through a weak reference) copies its notification
    // then, whatever happens, and leaves the pool; the others are reused by the next batch.
    struct KeepKept {
      std::vector<View>& views;
      std::size_t used = 0;
      py::object items;
      ~KeepKept() {
        items = py::object();  // the list first: if the rule did not keep it, its references go
        for (std::size_t i = 0; i < used; ++i) {
          View& v = views[i];
          if (Py_REFCNT(v.obj.ptr()) > 1 || reinterpret_cast<py::detail::instance*>(v.obj.ptr())->weakrefs != nullptr) {
            v.cpp->keep();
            v = View{};  // the rule's now: a new view takes its place
          } else {
            v.cpp->point_at(nullptr);
          }
        }
      }
    } keep_kept{views_, 0, {}};
    try {
      py::list items(batch.size());
      if (views_.size() < batch.size()) views_.resize(batch.size());
      for (std::size_t i = 0; i < batch.size(); ++i) {
        View& v = views_[i];
        if (!v.obj) {
          v.obj = py::cast(RuleNotification(nullptr));
          v.cpp = &v.obj.cast<RuleNotification&>();
        }
        v.cpp->point_at(batch[i]);
        keep_kept.used = i + 1;
        PyList_SET_ITEM(items.ptr(), static_cast<Py_ssize_t>(i), v.obj.inc_ref().ptr());
      }
      keep_kept.items = items;
      py::object answers;
      if (with_health_ && health != nullptr) {
        auto view = std::make_shared<HealthView>(health);
        struct Detach {  // whatever happens, a view a rule kept no longer reads the loop's state
          HealthView& v;
          ~Detach() { v.detach(); }
        } detach{*view};
        answers = route_batch_(items, view);
      } else {
        answers = route_batch_(items);
      }
      if (!PyList_Check(answers.ptr())) throw Error("route_batch must return a list");
      auto list = py::reinterpret_borrow<py::list>(answers);
      if (list.size() != batch.size()) throw Error("route_batch returned a list of the wrong length");
      for (std::size_t i = 0; i < batch.size(); ++i) {
        py::object answer = list[i];  // held: reading a custom answer's attributes runs Python
        out[i] = to_result(answer);
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

  /// One answer of the routing function: a plan, or the text of why there is none. A plan that
  /// cannot be used (a lone surrogate in a name, a wrong type) fails only its own notification.
  RouteResult to_result(py::handle answer) {
    RouteResult r;
    if (PyUnicode_Check(answer.ptr())) {
      r.error = display_text(answer);  // the reason is kept even if it holds a lone surrogate
      return r;
    }
    try {
      // As hasattr(answer, "_wire"): any error reading it means there is none.
      if (PyObject* wire = PyObject_GetAttr(answer.ptr(), wire_name_.ptr())) {
        return converted(py::reinterpret_steal<py::object>(wire));
      }
      PyErr_Clear();
      // Any object with channel, providers and template attributes: a plan of one step.
      PlanStep st;
      st.channel = to_text(answer.attr("channel"), "plan.channel");
      py::object providers = answer.attr("providers");
      if (PyUnicode_Check(providers.ptr())) throw ValidationError("plan.providers", "must be a sequence of names");
      std::size_t n = 0;
      for (py::handle p : providers) {
        st.providers.push_back(to_text(p, "plan.providers[" + std::to_string(n++) + "]"));
      }
      py::object tmpl = answer.attr("template");
      if (!tmpl.is_none()) st.template_text = to_text(tmpl, "plan.template");
      if (py::hasattr(answer, "batch")) {
        py::object batch = answer.attr("batch");
        if (!PyBool_Check(batch.ptr())) throw ValidationError("plan.batch", "must be True or False");
        st.batch = batch.ptr() == Py_True;
      }
      r = RouteResult::of(Plan::one(std::move(st)));
    } catch (const Error& e) {
      r = RouteResult{false, {}, std::string("the rule returned an unusable plan: ") + e.what()};
    } catch (py::error_already_set& e) {
      r = RouteResult{false, {}, "the rule returned an unusable plan: " + display_text(e.value())};
    }
    return r;
  }

  /// The RouteResult of a wire form: herald.Plan shares one wire tuple among equal plain plans
  /// (python/herald/plan.py, _PLAIN_WIRES), so a rule's answers are mostly a few tuples seen again
  /// and again. Converted once, when a tuple is seen a second time in its slot; a slot keeps its
  /// tuple alive, so the address cannot come back as another object. Only wires made of tuples
  /// all the way down are kept: they cannot change.
  RouteResult converted(py::object wire) {
    const auto at = reinterpret_cast<std::uintptr_t>(wire.ptr());
    Converted& c = converted_[(at >> 4U) % converted_.size()];
    if (c.wire.ptr() == wire.ptr()) {
      if (c.ready) return c.result;
      c.result = from_wire(wire);
      c.ready = immutable_wire(wire);
      return c.result;
    }
    RouteResult r = from_wire(wire);
    c.wire = std::move(wire);
    c.ready = false;
    return r;
  }

  /// A wire form made only of tuples, str, int and bool (as plan.py builds it) cannot change:
  /// safe to convert once. Anything else is converted each time, as before.
  static bool immutable_wire(py::handle wire) {
    auto leaf = [](PyObject* v) { return PyUnicode_CheckExact(v) || PyLong_CheckExact(v) || PyBool_Check(v); };
    auto tuple_of = [](PyObject* t, auto&& ok) {
      if (!PyTuple_CheckExact(t)) return false;
      for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(t); ++i) {
        if (!ok(PyTuple_GET_ITEM(t, i), i)) return false;
      }
      return true;
    };
    auto step = [&](PyObject* st, Py_ssize_t) {
      return tuple_of(st, [&](PyObject* v, Py_ssize_t i) {
        return i == 1 ? tuple_of(v, [&](PyObject* p, Py_ssize_t) { return leaf(p); }) : leaf(v);
      });
    };
    return tuple_of(wire.ptr(), [&](PyObject* v, Py_ssize_t i) {
      return leaf(v) || (i == 1 && tuple_of(v, step));
    });
  }

  /// herald.Plan's `_wire`: ("plan", steps) with each step (channel, providers, text, subject,
  /// html, title, image, data_json, batch, with_previous, after_ms, success), or ("skip", reason),
  /// or ("defer", at_ms or -1, delay_ms, the rule's own value). Built and checked by python/herald/plan.py.
  static RouteResult from_wire(py::handle wire) {
    auto t = py::reinterpret_borrow<py::tuple>(wire);
    const std::string kind = to_text(t[0], "plan");
    RouteResult r;
    if (kind == "skip") {
      r.kind = RouteResult::Kind::skip;
      r.error = to_text(t[1], "Plan.skip(reason)");
      return r;
    }
    if (kind == "defer") {
      r.kind = RouteResult::Kind::defer;
      const auto at = t[1].cast<std::int64_t>();
      r.defer_until_ms = at >= 0 ? at : -t[2].cast<std::int64_t>();  // negative: a delay from now
      return r;
    }
    Plan plan;
    auto steps = py::reinterpret_borrow<py::tuple>(t[1]);
    plan.steps.reserve(steps.size());
    for (py::handle h : steps) {
      auto s = py::reinterpret_borrow<py::tuple>(h);
      PlanStep st;
      st.channel = to_text(s[0], "plan.channel");
      for (py::handle p : py::reinterpret_borrow<py::tuple>(s[1])) st.providers.push_back(to_text(p, "plan.providers"));
      st.template_text = to_text(s[2], "plan.text");
      st.content.subject = to_text(s[3], "plan.subject");
      st.content.html = to_text(s[4], "plan.html");
      st.content.title = to_text(s[5], "plan.title");
      st.content.image = to_text(s[6], "plan.image");
      st.content.data_json = to_text(s[7], "plan.data");
      st.batch = s[8].ptr() == Py_True;
      st.start = s[9].ptr() == Py_True ? StepStart::with_previous : StepStart::fallback;
      st.after_ms = s[10].cast<std::int64_t>();
      st.success = static_cast<StepSuccess>(s[11].cast<int>());
      plan.steps.push_back(std::move(st));
    }
    return RouteResult::of(std::move(plan));
  }

  /// A rule's view of a notification, reused from batch to batch while no one else holds it (a
  /// Python object made per notification cost more than the rest of the conversion).
  struct View {
    py::object obj;
    RuleNotification* cpp = nullptr;  ///< inside obj
  };
  struct Converted {
    py::object wire;  ///< kept alive: its address is the key
    bool ready = false;
    RouteResult result;
  };
  py::object route_batch_;
  py::object wire_name_ = py::reinterpret_steal<py::object>(PyUnicode_InternFromString("_wire"));
  std::array<Converted, 16> converted_;  ///< by the wire's address (converted())
  std::vector<View> views_;              ///< loop thread, with the GIL (call())
  bool with_health_ = false;
  bool thread_state_kept_ = false;  ///< loop thread only
};

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

/// The plain fields of a rule's Notification as CPython getters, in place of pybind11 properties:
/// a rule (and RuleSet.route, for `type`) reads them once per notification on the loop, and a
/// pybind11 property's call (its dispatcher, the argument's conversion, the overload loop) cost
/// ~1,200 instructions where these take a few hundred. Each doc starts with the signature
/// pybind11 would write, which tests/test_stubs.py compares with the stub.
template <typename Read>
PyObject* rule_field(PyObject* self, Read read) noexcept {
  try {
    return read(py::cast<const RuleNotification&>(py::handle(self)).get()).release().ptr();
  } catch (py::error_already_set& e) {
    e.restore();
  } catch (const std::exception& e) {
    PyErr_SetString(PyExc_RuntimeError, e.what());
  }
  return nullptr;
}

PyGetSetDef rule_fields[] = {
    {"id", [](PyObject* self, void*) { return rule_field(self, [](const Notification& n) { return py::int_(n.id); }); },
     nullptr, "(self: herald._core.Notification) -> int\n\nThe notification's id.", nullptr},
    {"tenant", [](PyObject* self, void*) { return rule_field(self, [](const Notification& n) { return to_py_text(n.tenant); }); },
     nullptr, "(self: herald._core.Notification) -> str\n\nThe tenant.", nullptr},
    {"type", [](PyObject* self, void*) { return rule_field(self, [](const Notification& n) { return to_py_text(n.type); }); },
     nullptr, "(self: herald._core.Notification) -> str\n\nThe notification type.", nullptr},
    {"recipient_id",
     [](PyObject* self, void*) { return rule_field(self, [](const Notification& n) { return to_py_text(n.recipient_id); }); },
     nullptr, "(self: herald._core.Notification) -> str\n\nThe recipient's id.", nullptr},
    {"priority",
     [](PyObject* self, void*) {
       return rule_field(self, [](const Notification& n) { return to_py_text(to_string(n.priority)); });
     },
     nullptr, "(self: herald._core.Notification) -> str\n\ncritical, high, normal or bulk.", nullptr},
    {nullptr, nullptr, nullptr, nullptr, nullptr}};

}  // namespace

Engine& core_engine(py::handle engine) { return py::cast<PyEngine&>(engine).get(); }

void register_engine(py::module_& m) {
  // Each field is read from the loop's notification when asked (RuleNotification).
  using RN = RuleNotification;
  py::class_<RN> rule_notification(m, "Notification", "A notification as a rule sees it (read-only).");
  for (PyGetSetDef* f = rule_fields; f->name != nullptr; ++f) {
    auto* type = reinterpret_cast<PyTypeObject*>(rule_notification.ptr());
    auto descriptor = py::reinterpret_steal<py::object>(PyDescr_NewGetSet(type, f));
    if (!descriptor || PyObject_SetAttrString(rule_notification.ptr(), f->name, descriptor.ptr()) != 0) {
      throw py::error_already_set();
    }
  }
  rule_notification
      .def_property_readonly("recipient", [](const RN& r) { return from_json_text(r.get().recipient_json); })
      .def_property_readonly("data", [](const RN& r) { return from_json_text(r.get().data_json); })
      .def_property_readonly("idempotency_key",
                             [](const RN& r) -> py::object {
                               const Notification& n = r.get();
                               return n.idempotency_key.empty() ? py::object(py::none()) : py::str(n.idempotency_key);
                             })
      .def_property_readonly("ordering_key",
                             [](const RN& r) -> py::object {
                               const Notification& n = r.get();
                               return n.ordering_key.empty() ? py::object(py::none()) : py::str(n.ordering_key);
                             })
      .def_property_readonly("send_at", [](const RN& r) { return ms_to_seconds(r.get().send_at_ms); })
      .def_property_readonly("expires_at", [](const RN& r) { return ms_to_seconds(r.get().expires_at_ms); })
      .def_property_readonly("created_at", [](const RN& r) { return ms_to_seconds(r.get().created_at_ms); })
      .def("__repr__", [](const RN& r) {
        const Notification& n = r.get();
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
             auto router = std::make_shared<PyRouter>(std::move(route_batch));
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
