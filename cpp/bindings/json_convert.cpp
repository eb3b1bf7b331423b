#include "pybind.hpp"

#include <cmath>
#include <cstdio>

#include "herald/clock.hpp"
#include "herald/errors.hpp"
#include "herald/json_text.hpp"

namespace herald::bindings {

namespace {

std::string_view utf8(py::handle s) {
  Py_ssize_t size = 0;
  const char* data = PyUnicode_AsUTF8AndSize(s.ptr(), &size);
  if (data == nullptr) throw py::error_already_set();
  return {data, static_cast<std::size_t>(size)};
}

// Leaked on purpose: a static py::object would be released after the interpreter is gone.
py::handle datetime_module() {
  static auto* module = new py::module_(py::module_::import("datetime"));
  return *module;
}

py::handle datetime_types() {
  static auto* types = new py::object(py::make_tuple(datetime_module().attr("datetime"), datetime_module().attr("date")));
  return *types;
}

}  // namespace

void append_json(std::string& out, py::handle value, std::string& path) {
  PyObject* o = value.ptr();
  if (o == Py_None) {
    out += "null";
  } else if (o == Py_True) {
    out += "true";
  } else if (o == Py_False) {
    out += "false";
  } else if (PyUnicode_Check(o)) {
    detail::append_json_string(out, utf8(value));
  } else if (PyLong_Check(o)) {
    int overflow = 0;
    const long long v = PyLong_AsLongLongAndOverflow(o, &overflow);
    if (overflow != 0) throw ValidationError(path, "integer too large for JSON");
    out += std::to_string(v);
  } else if (PyFloat_Check(o)) {
    const double d = PyFloat_AS_DOUBLE(o);
    if (!std::isfinite(d)) throw ValidationError(path, "NaN and infinity are not valid JSON");
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.17g", d);
    out += buf;
  } else if (PyDict_Check(o)) {
    out += '{';
    PyObject* key = nullptr;
    PyObject* item = nullptr;
    Py_ssize_t pos = 0;
    bool first = true;
    const auto base = path.size();
    while (PyDict_Next(o, &pos, &key, &item)) {
      if (!PyUnicode_Check(key)) throw ValidationError(path, "dictionary keys must be strings");
      if (!first) out += ',';
      first = false;
      const auto k = utf8(key);
      detail::append_json_string(out, k);
      out += ':';
      path += '.';
      path.append(k);
      append_json(out, item, path);
      path.resize(base);
    }
    out += '}';
  } else if (PyList_Check(o) || PyTuple_Check(o)) {
    out += '[';
    const Py_ssize_t n = PySequence_Fast_GET_SIZE(o);
    PyObject** items = PySequence_Fast_ITEMS(o);
    const auto base = path.size();
    for (Py_ssize_t i = 0; i < n; ++i) {
      if (i != 0) out += ',';
      path += '[' + std::to_string(i) + ']';
      append_json(out, items[i], path);
      path.resize(base);
    }
    out += ']';
  } else if (py::isinstance(value, datetime_types())) {
    detail::append_json_string(out, value.attr("isoformat")().cast<std::string>());
  } else {
    throw ValidationError(path, std::string("cannot be sent as JSON (type ") + Py_TYPE(o)->tp_name + ")");
  }
}

std::string to_json(py::handle value, std::string_view field) {
  std::string out;
  std::string path(field);
  append_json(out, value, path);
  return out;
}

py::object from_json(const nlohmann::json& j) {
  switch (j.type()) {
    case nlohmann::json::value_t::null: return py::none();
    case nlohmann::json::value_t::boolean: return py::bool_(j.get<bool>());
    case nlohmann::json::value_t::number_integer: return py::int_(j.get<std::int64_t>());
    case nlohmann::json::value_t::number_unsigned: return py::int_(j.get<std::uint64_t>());
    case nlohmann::json::value_t::number_float: return py::float_(j.get<double>());
    case nlohmann::json::value_t::string: return py::str(j.get_ref<const std::string&>());
    case nlohmann::json::value_t::array: {
      py::list out(j.size());
      for (std::size_t i = 0; i < j.size(); ++i) out[i] = from_json(j[i]);
      return std::move(out);
    }
    case nlohmann::json::value_t::object: {
      py::dict out;
      for (const auto& [k, v] : j.items()) out[py::str(k)] = from_json(v);
      return std::move(out);
    }
    default: return py::none();
  }
}

py::object from_json_text(const std::string& text) {
  auto j = nlohmann::json::parse(text, nullptr, false);
  if (j.is_discarded()) return py::none();
  return from_json(j);
}

std::int64_t to_epoch_ms(py::handle value, std::string_view field) {
  PyObject* o = value.ptr();
  if (o == Py_None) return 0;
  if (PyBool_Check(o)) throw ValidationError(std::string(field), "must be a datetime, a timedelta or epoch seconds");
  if (PyLong_Check(o) || PyFloat_Check(o)) {
    const double s = PyFloat_AsDouble(o);
    if (!std::isfinite(s) || s < 0) throw ValidationError(std::string(field), "must be a non-negative finite number");
    return static_cast<std::int64_t>(std::llround(s * 1000.0));
  }
  py::handle dt_module = datetime_module();
  if (py::isinstance(value, dt_module.attr("timedelta"))) {
    const double s = value.attr("total_seconds")().cast<double>();
    return now_ms() + static_cast<std::int64_t>(std::llround(s * 1000.0));
  }
  if (py::isinstance(value, dt_module.attr("datetime"))) {
    if (value.attr("tzinfo").is_none()) {
      throw ValidationError(std::string(field), "datetime must be timezone-aware (e.g. tzinfo=timezone.utc)");
    }
    const double s = value.attr("timestamp")().cast<double>();
    return static_cast<std::int64_t>(std::llround(s * 1000.0));
  }
  throw ValidationError(std::string(field), std::string("must be a datetime, a timedelta or epoch seconds (got ") +
                                                Py_TYPE(o)->tp_name + ")");
}

}  // namespace herald::bindings
