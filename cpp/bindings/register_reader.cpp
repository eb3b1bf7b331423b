#include "pybind.hpp"

#include <memory>

#include "herald/errors.hpp"
#include "herald/store.hpp"

namespace herald::bindings {

namespace {

/// A data folder opened for reading only: no lock, no dispatch, no provider secrets; SQLite's WAL
/// lets it read while an engine writes. Safe to use from one thread at a time per call (the store
/// serialises its reads).
struct PyReader {
  std::unique_ptr<Store> store;
  Store& get() {
    if (!store) throw EngineClosed("the reader is closed");
    return *store;
  }
};

}  // namespace

void register_reader(py::module_& m) {
  py::class_<PyReader>(m, "StoreReader")
      .def(py::init([](const py::object& data_dir) {
             const std::string dir = to_text(data_dir, "data_dir", ErrorKind::config);
             auto r = std::make_unique<PyReader>();
             StoreOptions o;
             o.read_only = true;
             py::gil_scoped_release release;  // opening reads the file; nothing needs Python
             r->store = std::make_unique<Store>(dir, o);
             return r;
           }),
           py::arg("data_dir"))
      .def(
          "status",
          [](PyReader& self, Id id) -> py::object {
            std::optional<StoredNotification> s;
            {
              py::gil_scoped_release release;
              s = self.get().get(id);
            }
            return s ? py::object(status_dict(*s)) : py::object(py::none());
          },
          py::arg("id"))
      .def(
          "trace",
          [](PyReader& self, Id id) {
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
      .def(
          "dead_letters",
          [](PyReader& self, std::size_t limit) {
            std::vector<StoredNotification> rows;
            {
              py::gil_scoped_release release;
              rows = self.get().list_by_state(State::dead_lettered, limit);
            }
            py::list out;
            for (const auto& r : rows) out.append(status_dict(r));
            return out;
          },
          py::arg("limit") = 1000)
      .def(
          "suppressions",
          [](PyReader& self, std::size_t limit) {
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
      .def("close", [](PyReader& self) { self.store.reset(); })
      .def_property_readonly("closed", [](const PyReader& self) { return !self.store; });
}

}  // namespace herald::bindings
