#include "pybind.hpp"

#include "rule_router.hpp"

/// The routing rules' side of the engine: the notification a rule reads (RuleNotification, with
/// C getters for its plain fields) and PyRouter, which calls the rules in batches and converts
/// their plans.

#include "health_view.hpp"

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "herald/errors.hpp"
#include "herald/plan.hpp"

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

std::shared_ptr<Router> make_rule_router(py::object route_batch) {
  return std::make_shared<PyRouter>(std::move(route_batch));
}

void register_rule_notification(py::module_& m) {
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
}

}  // namespace herald::bindings
