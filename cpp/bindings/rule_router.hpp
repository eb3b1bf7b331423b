#pragma once
/// The routing rules' side of the engine: herald._core.Notification (a notification as a rule
/// sees it) and the Router that calls the Python routing function in batches (rule_router.cpp).
#include "pybind.hpp"

#include <memory>

#include "herald/plan.hpp"

namespace herald::bindings {

/// The router of an Engine: calls `route_batch` (RuleSet.router()'s function, or any callable
/// taking the list of a batch's notifications) on the engine loop thread, with the GIL.
std::shared_ptr<Router> make_rule_router(py::object route_batch);

/// herald._core.Notification, the read-only notification a rule receives.
void register_rule_notification(py::module_& m);

}  // namespace herald::bindings
