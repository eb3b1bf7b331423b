// herald._core.ManualClock: the engine's time under a test's control (herald.ManualClock wraps it).
#include <chrono>

#include "herald/clock.hpp"
#include "herald/errors.hpp"
#include "pybind.hpp"

namespace herald::bindings {

void register_clock(py::module_& m) {
  py::class_<ManualClock, std::shared_ptr<ManualClock>>(m, "ManualClock")
      .def(py::init([](std::int64_t start_us) { return std::make_shared<ManualClock>(start_us); }), py::arg("start_us"))
      .def("now_us", &ManualClock::now_us)
      .def(
          "advance_us",
          [](ManualClock& c, std::int64_t us) {
            if (us < 0) throw ValidationError("seconds", "must not be negative (time only moves forward)");
            py::gil_scoped_release release;  // wakes the engine's loop, which may be waiting for the GIL
            c.advance(std::chrono::microseconds(us));
          },
          py::arg("us"));
}

}  // namespace herald::bindings
