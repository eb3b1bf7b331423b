#pragma once
/// Providers' health for Python: herald.ProviderHealth, and the mapping a rule receives as its
/// second parameter (register_health.cpp).
#include "pybind.hpp"

#include <map>
#include <memory>

#include "herald/circuit_breaker.hpp"

namespace herald::bindings {

/// `providers` in a rule: name → ProviderHealth, read from the loop's state during one routing
/// call only. Each provider is read once per view (the same answer for every rule of the batch).
class HealthView {
 public:
  explicit HealthView(const ProviderHealthSource* source) : source_(source) {}
  /// Called when the routing call returns: a view a rule kept cannot read the loop's state later.
  void detach() noexcept { source_ = nullptr; }
  const ProviderHealth& at(const std::string& name);
  bool contains(const std::string& name);
  std::vector<std::string> names();

 private:
  const ProviderHealthSource& source();
  const ProviderHealthSource* source_;
  std::map<std::string, ProviderHealth, std::less<>> read_;
};

void register_health(py::module_& m);

}  // namespace herald::bindings
