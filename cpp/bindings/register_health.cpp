#include "health_view.hpp"

#include "herald/errors.hpp"

namespace herald::bindings {

const ProviderHealthSource& HealthView::source() {
  if (source_ == nullptr) {
    throw Error("providers: the health view is readable only during the routing call that received it");
  }
  return *source_;
}

const ProviderHealth& HealthView::at(const std::string& name) {
  const ProviderHealthSource& from = source();  // refused after the call, even what was read in it
  if (auto it = read_.find(name); it != read_.end()) return it->second;
  std::optional<ProviderHealth> h = from.health(name);
  if (!h) throw py::key_error("no provider named '" + name + "'");
  return read_.emplace(name, std::move(*h)).first->second;
}

bool HealthView::contains(const std::string& name) {
  const ProviderHealthSource& from = source();
  return read_.count(name) > 0 || from.health(name).has_value();
}

std::vector<std::string> HealthView::names() { return source().names(); }

namespace {

py::object seconds_or_none(std::int64_t ms) {
  return ms == 0 ? py::object(py::none()) : py::object(py::float_(static_cast<double>(ms) / 1000.0));
}

}  // namespace

void register_health(py::module_& m) {
  py::class_<ProviderHealth>(m, "ProviderHealth",
                             "One provider's health, as rules and Engine.provider_health() see it (read-only).")
      .def_readonly("name", &ProviderHealth::name)
      .def_property_readonly("circuit", [](const ProviderHealth& h) { return std::string(to_string(h.circuit)); })
      .def_readonly("failure_rate", &ProviderHealth::failure_rate)
      .def_readonly("attempts", &ProviderHealth::attempts)
      .def_property_readonly("p99_ms",
                             [](const ProviderHealth& h) -> py::object {
                               return h.p99_ms < 0 ? py::object(py::none()) : py::object(py::float_(h.p99_ms));
                             })
      .def_readonly("cost", &ProviderHealth::cost)
      .def_property_readonly("half_open_at", [](const ProviderHealth& h) { return seconds_or_none(h.half_open_at_ms); })
      .def("__repr__", [](const ProviderHealth& h) {
        std::string p99 = h.p99_ms < 0 ? "None" : py::str(py::float_(h.p99_ms)).cast<std::string>();
        return "ProviderHealth(name='" + h.name + "', circuit='" + std::string(to_string(h.circuit)) +
               "', failure_rate=" + py::str(py::float_(h.failure_rate)).cast<std::string>() +
               ", attempts=" + std::to_string(h.attempts) + ", p99_ms=" + p99 +
               ", cost=" + py::str(py::float_(h.cost)).cast<std::string>() + ")";
      });

  py::class_<HealthView, std::shared_ptr<HealthView>>(
      m, "ProviderHealthView",
      "The providers' health a rule receives as its second parameter: providers[name] is a "
      "ProviderHealth. Readable during the routing call only.")
      .def("__getitem__", [](HealthView& v, const std::string& name) { return v.at(name); })
      .def("__contains__", [](HealthView& v, const py::object& name) {
        return PyUnicode_Check(name.ptr()) && v.contains(name.cast<std::string>());
      })
      .def("get",
           [](HealthView& v, const std::string& name, const py::object& fallback) -> py::object {
             return v.contains(name) ? py::cast(v.at(name)) : fallback;
           },
           py::arg("name"), py::arg("default") = py::none())
      .def("keys", [](HealthView& v) { return v.names(); })
      .def("__iter__", [](HealthView& v) { return py::iter(py::cast(v.names())); })
      .def("__len__", [](HealthView& v) { return v.names().size(); })
      .def("__repr__", [](HealthView& v) {
        std::string out = "ProviderHealthView(";
        bool first = true;
        for (const auto& name : v.names()) {
          out += (first ? "" : ", ") + name;
          first = false;
        }
        return out + ")";
      });
}

}  // namespace herald::bindings
