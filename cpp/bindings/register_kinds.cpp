#include "pybind.hpp"

#include <vector>

#include "herald/event.hpp"
#include "herald/notification.hpp"

/// The words of the core's enums, for tests/test_kinds.py to hold herald.kinds' Literal types to.
namespace herald::bindings {

namespace {

/// to_string of every value of an enum numbered from 0, in order; `count` values, or up to the first
/// the core names "unknown" when the enum has no count constant.
template <typename E>
std::vector<std::string> names(int count, int first = 0) {
  std::vector<std::string> out;
  for (int i = first; i < count; ++i) {
    const std::string_view name = to_string(static_cast<E>(i));
    if (name == "unknown") break;
    out.emplace_back(name);
  }
  return out;
}

}  // namespace

void register_kinds(py::module_& m) {
  // State has no count: the loop stops at the first value to_string does not know (at most 256).
  m.def("states", [] { return names<State>(256); }, "The lifecycle states, in the order of the core's enum.");
  m.def("priorities", [] { return names<Priority>(priority_count); }, "The priorities, most urgent first.");
  m.def("error_classes", [] { return names<ErrorClass>(error_class_count, 1); },
        "The error classes (not 'none', which the log leaves out).");
  m.def("event_kinds", [] { return names<EventKind>(event_kind_count, 1); },
        "The event kinds, in the order of the core's enum (not 'unknown').");
}

}  // namespace herald::bindings
