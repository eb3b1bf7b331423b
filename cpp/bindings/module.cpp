#include "pybind.hpp"

#include "health_view.hpp"
#include "rule_router.hpp"
#include "herald/store.hpp"

/// herald._core: the private extension. Each area registers itself from its own file.
PYBIND11_MODULE(_core, m) {
  // First, before anything in the process can initialise SQLite (herald.Store says why).
  herald::Store::turn_off_sqlite_memory_stats();
  m.def("_sqlite_memory_stats_off", &herald::Store::turn_off_sqlite_memory_stats,
        "True when SQLite's memory statistics were turned off as this module loaded (herald::Store).");
  m.doc() = "herald's C++ core (private: use the herald package)";
  herald::bindings::register_errors(m);
  herald::bindings::register_health(m);
  herald::bindings::register_rule_notification(m);
  herald::bindings::register_engine(m);
  herald::bindings::register_sandbox(m);
  herald::bindings::register_bench(m);
  herald::bindings::register_retention(m);
  herald::bindings::register_reader(m);
  herald::bindings::register_serve(m);
  herald::bindings::register_clock(m);
  herald::bindings::register_kinds(m);
  herald::bindings::register_cascade(m);
}
