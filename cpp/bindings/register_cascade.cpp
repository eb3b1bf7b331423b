#include "pybind.hpp"

#include <memory>
#include <string>
#include <vector>

#include "herald/delivery.hpp"
#include "herald/errors.hpp"

/// The cascade transitions of the delivery machine, driven from Python: what the Hypothesis
/// property in tests/test_cascade_race.py runs every ordering of events through. Not the API.
namespace herald::bindings {

namespace {

State state_named(const std::string& name) {
  for (int i = 0; i < 256; ++i) {
    if (to_string(static_cast<State>(i)) == name) return static_cast<State>(i);
    if (to_string(static_cast<State>(i)) == "unknown") break;
  }
  throw ValidationError("state", "unknown state '" + name + "'");
}

ReceiptState receipt_named(const std::string& name) {
  const ReceiptState r = parse_receipt_state(name);
  if (r == ReceiptState::none && !name.empty()) throw ValidationError("receipt", "unknown receipt '" + name + "'");
  return r;
}

/// One parent notification and the machine, with what each transition returned kept as dicts.
class CascadeModel {
 public:
  /// steps: (channel, with_previous, after_ms, success) each.
  explicit CascadeModel(const std::vector<std::tuple<std::string, bool, std::int64_t, std::string>>& steps) {
    for (const auto& [channel, with_previous, after_ms, success] : steps) {
      PlanStep s;
      s.channel = channel;
      s.providers = {channel + "-provider"};
      s.start = with_previous ? StepStart::with_previous : StepStart::fallback;
      s.after_ms = after_ms;
      s.success = success == "read" ? StepSuccess::read : success == "delivered" ? StepSuccess::delivered : StepSuccess::accepted;
      plan_.steps.push_back(std::move(s));
    }
    x_.n.id = 1;
    x_.n.type = "model";
  }

  py::dict begin(std::int64_t now) {
    machine_.take(x_, now);
    return out(machine_.routed(x_, RouteResult::of(plan_), now));
  }
  py::dict step_finished(int step, const std::string& state, const std::string& receipt, std::int64_t now) {
    StepRecord r;
    r.step = step;
    r.finished = true;
    r.state = state_named(state);
    r.receipt = receipt_named(receipt);
    r.error = state == "completed" ? "" : "failed in the model";
    return guarded([&] { return machine_.step_finished(x_, r, now); });
  }
  py::dict step_receipt(int step, const std::string& receipt, std::int64_t now) {
    return guarded([&] { return machine_.step_receipt(x_, step, receipt_named(receipt), now); });
  }
  py::dict acknowledged(const std::string& channel, std::int64_t now) {
    return guarded([&] { return machine_.acknowledged(x_, channel, now); });
  }
  py::dict deadline(std::int64_t now) {
    return guarded([&] { return machine_.deadline(x_, now); });
  }
  py::dict cancel() {
    return guarded([&] { return machine_.cancel(x_); });
  }
  [[nodiscard]] std::string state() const { return std::string(to_string(x_.d.state)); }
  [[nodiscard]] std::string phase() const { return std::string(to_string(x_.phase)); }
  [[nodiscard]] std::vector<std::string> statuses() const {
    std::vector<std::string> v;
    if (x_.cascade) {
      for (StepStatus s : x_.cascade->steps) v.emplace_back(to_string(s));
    }
    return v;
  }

 private:
  /// After the plan ended, the shell forgets the parent: later events find nothing to act on.
  template <class F>
  py::dict guarded(F&& f) {
    if (x_.phase == Phase::finished) return out(Step{});
    return out(f());
  }

  static py::dict out(const Step& s) {
    py::dict d;
    py::list events;
    for (const Event& e : s.events) events.append(py::make_tuple(std::string(to_string(e.kind)), e.step));
    d["events"] = events;
    d["start"] = s.start_steps;
    d["wake_at"] = s.wake_at_ms;
    d["next"] = std::string(to_string(s.next));
    return d;
  }

  DeliveryMachine machine_;
  Plan plan_;
  Delivery x_;
};

}  // namespace

void register_cascade(py::module_& m) {
  py::class_<CascadeModel>(m, "_CascadeModel")
      .def(py::init<const std::vector<std::tuple<std::string, bool, std::int64_t, std::string>>&>(), py::arg("steps"))
      .def("begin", &CascadeModel::begin, py::arg("now"))
      .def("step_finished", &CascadeModel::step_finished, py::arg("step"), py::arg("state"), py::arg("receipt"),
           py::arg("now"))
      .def("step_receipt", &CascadeModel::step_receipt, py::arg("step"), py::arg("receipt"), py::arg("now"))
      .def("acknowledged", &CascadeModel::acknowledged, py::arg("channel"), py::arg("now"))
      .def("deadline", &CascadeModel::deadline, py::arg("now"))
      .def("cancel", &CascadeModel::cancel)
      .def_property_readonly("state", &CascadeModel::state)
      .def_property_readonly("phase", &CascadeModel::phase)
      .def_property_readonly("statuses", &CascadeModel::statuses);
}

}  // namespace herald::bindings
