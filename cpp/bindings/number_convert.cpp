#include "pybind.hpp"

/// Checked conversion of Python numbers and times: every value is range-checked before it becomes a
/// C++ integer, so nothing wraps (2**32+8 is not 8) and nothing overflows into undefined behaviour.

#include <cmath>
#include <cstdio>
#include <limits>

#include "herald/clock.hpp"
#include "herald/errors.hpp"
#include "herald/notification.hpp"

namespace herald::bindings {

namespace {

/// A bound as people write it: 10000000, not 1e+07.
std::string format_bound(double v) {
  if (std::isinf(v)) return v > 0 ? "infinity" : "-infinity";
  if (v == std::floor(v) && std::fabs(v) < 1e15) return std::to_string(static_cast<std::int64_t>(v));
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", v);
  return buf;
}

/// Reads an int or an __index__ object (numpy integers) into `out`; false for anything else, bool
/// and float included. Sets `overflow` to -1/+1 when the value does not fit 64 bits.
bool as_int64(py::handle value, std::int64_t& out, int& overflow) {
  PyObject* o = value.ptr();
  if (PyBool_Check(o)) return false;
  py::object index;
  if (!PyLong_Check(o)) {
    if (PyFloat_Check(o) || !PyIndex_Check(o)) return false;
    index = py::reinterpret_steal<py::object>(PyNumber_Index(o));
    if (!index) {
      PyErr_Clear();
      return false;
    }
    o = index.ptr();
  }
  overflow = 0;
  const long long v = PyLong_AsLongLongAndOverflow(o, &overflow);
  if (v == -1 && PyErr_Occurred() != nullptr) throw py::error_already_set();
  out = v;
  return true;
}

std::string got(py::handle value) { return " (got " + brief_text(value) + ")"; }

[[noreturn]] void out_of_time_range(py::handle value, std::string_view field) {
  fail(ErrorKind::validation, std::string(field),
       "must be a time from 1970-01-01 to 9999-12-31: epoch seconds from 0 to " + std::to_string(max_epoch_s) +
           got(value));
}

/// Epoch seconds (finite, in range) to milliseconds.
std::int64_t seconds_to_ms(double s, py::handle value, std::string_view field) {
  if (!std::isfinite(s)) fail(ErrorKind::validation, std::string(field), "must be a finite number" + got(value));
  if (s < 0 || s >= static_cast<double>(max_epoch_s + 1)) out_of_time_range(value, field);
  return std::min<std::int64_t>(std::llround(s * 1000.0), max_epoch_s * 1000 + 999);
}

// Leaked on purpose: a static py::object would be released after the interpreter is gone.
py::handle datetime_module() {
  static auto* module = new py::module_(py::module_::import("datetime"));
  return *module;
}

/// The whole milliseconds of a timedelta, floored; exact (|timedelta| < 1e9 days fits easily).
std::int64_t timedelta_ms(py::handle td) {
  const auto part = [&](const char* name) { return td.attr(name).cast<std::int64_t>(); };
  // Normalised: only days may be negative, so the division below floors.
  return part("days") * 86'400'000 + part("seconds") * 1000 + part("microseconds") / 1000;
}

/// Milliseconds since the epoch of an aware datetime, exactly (no float rounding of the last
/// microsecond). A Python error (a tzinfo that raises) becomes a ValidationError for `field`.
std::int64_t datetime_ms(py::handle value, std::string_view field) {
  static auto* epoch = new py::object(datetime_module().attr("datetime")(
      1970, 1, 1, 0, 0, 0, 0, datetime_module().attr("timezone").attr("utc")));  // leaked, as above
  try {
    return timedelta_ms(value.attr("__sub__")(*epoch));
  } catch (py::error_already_set& e) {
    throw ValidationError(std::string(field), "is not a usable time (" + display_text(e.value()) + ")");
  }
}

}  // namespace

std::int64_t to_int(py::handle value, std::string_view field, std::int64_t min, std::int64_t max, ErrorKind kind) {
  std::int64_t v = 0;
  int overflow = 0;
  const bool is_int = as_int64(value, v, overflow);
  if (!is_int || overflow != 0 || v < min || v > max) {
    fail(kind, std::string(field),
         "must be an integer from " + std::to_string(min) + " to " + std::to_string(max) + got(value));
  }
  return v;
}

std::uint64_t to_uint64(py::handle value, std::string_view field, ErrorKind kind) {
  const auto reason = [&] { return "must be an integer from 0 to 18446744073709551615" + got(value); };
  std::int64_t v = 0;
  int overflow = 0;
  if (!as_int64(value, v, overflow) || overflow < 0 || (overflow == 0 && v < 0)) fail(kind, std::string(field), reason());
  if (overflow == 0) return static_cast<std::uint64_t>(v);
  py::object index = py::reinterpret_steal<py::object>(PyNumber_Index(value.ptr()));
  if (!index) throw py::error_already_set();
  const unsigned long long u = PyLong_AsUnsignedLongLong(index.ptr());
  if (u == static_cast<unsigned long long>(-1) && PyErr_Occurred() != nullptr) {
    PyErr_Clear();
    fail(kind, std::string(field), reason());
  }
  return u;
}

double to_number(py::handle value, std::string_view field, double min, double max, ErrorKind kind) {
  const std::string range = std::isinf(max) ? "a finite number, " + format_bound(min) + " or more"
                                            : "a number from " + format_bound(min) + " to " + format_bound(max);
  PyObject* o = value.ptr();
  double v = 0;
  if (PyFloat_Check(o)) {
    v = PyFloat_AS_DOUBLE(o);
  } else {
    std::int64_t i = 0;
    int overflow = 0;
    if (!as_int64(value, i, overflow) || overflow != 0) fail(kind, std::string(field), "must be " + range + got(value));
    v = static_cast<double>(i);
  }
  if (!std::isfinite(v) || v < min || v > max) fail(kind, std::string(field), "must be " + range + got(value));
  return v;
}

std::int64_t to_epoch_ms(py::handle value, std::string_view field, std::int64_t now) {
  PyObject* o = value.ptr();
  if (o == Py_None) return 0;
  const std::string what = "must be a datetime, a timedelta or epoch seconds";
  if (PyBool_Check(o)) fail(ErrorKind::validation, std::string(field), what + " (got bool)");
  if (PyFloat_Check(o)) return seconds_to_ms(PyFloat_AS_DOUBLE(o), value, field);
  if (PyLong_Check(o)) {
    int overflow = 0;
    const long long s = PyLong_AsLongLongAndOverflow(o, &overflow);
    if (s == -1 && PyErr_Occurred() != nullptr) throw py::error_already_set();
    if (overflow != 0 || s < 0 || s > max_epoch_s) out_of_time_range(value, field);
    return static_cast<std::int64_t>(s) * 1000;
  }
  constexpr std::int64_t last_ms = max_epoch_s * 1000 + 999;
  py::handle dt_module = datetime_module();
  if (py::isinstance(value, dt_module.attr("timedelta"))) {
    const std::int64_t ms = (now != 0 ? now : now_ms()) + timedelta_ms(value);  // both far below 2**63
    if (ms < 0 || ms > last_ms) {
      fail(ErrorKind::validation, std::string(field),
           "must end between 1970-01-01 and 9999-12-31 when added to now" + got(value));
    }
    return ms;
  }
  if (py::isinstance(value, dt_module.attr("datetime"))) {
    if (value.attr("tzinfo").is_none()) {
      fail(ErrorKind::validation, std::string(field), "datetime must be timezone-aware (e.g. tzinfo=timezone.utc)");
    }
    const std::int64_t ms = datetime_ms(value, field);
    if (ms < 0 || ms > last_ms) out_of_time_range(value, field);
    return ms;
  }
  fail(ErrorKind::validation, std::string(field), what + " (got " + Py_TYPE(o)->tp_name + ")");
}

}  // namespace herald::bindings
