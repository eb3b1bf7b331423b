#include "pybind.hpp"

#include <array>
#include <cmath>
#include <cstdio>
#include <vector>

#include "herald/errors.hpp"
#include "herald/json_text.hpp"
#include "herald/notification.hpp"

namespace herald::bindings {

namespace {

// Leaked on purpose: a static py::object would be released after the interpreter is gone.
py::handle datetime_types() {
  static auto* types = [] {
    py::module_ dt = py::module_::import("datetime");
    return new py::object(py::make_tuple(dt.attr("datetime"), dt.attr("date")));
  }();
  return *types;
}

/// One conversion of a recipient or data object. Recursion is bounded by max_payload_depth, so a
/// deep or self-containing object ends in a ValidationError, never in a stack overflow.
class JsonWriter {
 public:
  JsonWriter(std::string& out, std::string& path) : out_(out), path_(path), root_size_(path.size()) {}

  void write(py::handle value) {
    PyObject* o = value.ptr();
    if (out_.size() > max_payload_bytes) too_large();
    if (o == Py_None) {
      out_ += "null";
    } else if (o == Py_True) {
      out_ += "true";
    } else if (o == Py_False) {
      out_ += "false";
    } else if (PyUnicode_Check(o)) {
      const std::string_view text = text_view(value, path_);
      if (out_.size() + text.size() > max_payload_bytes) too_large();  // escaping only adds
      detail::append_json_string(out_, text);
    } else if (PyLong_Check(o)) {
      int overflow = 0;
      const long long v = PyLong_AsLongLongAndOverflow(o, &overflow);
      if (v == -1 && PyErr_Occurred() != nullptr) throw py::error_already_set();
      if (overflow != 0) {
        throw ValidationError(path_, "must be an integer from -9223372036854775808 to 9223372036854775807 (got " +
                                         brief_text(value) + ")");
      }
      out_ += std::to_string(v);
    } else if (PyFloat_Check(o)) {
      const double d = PyFloat_AS_DOUBLE(o);
      if (!std::isfinite(d)) throw ValidationError(path_, "NaN and infinity are not valid JSON");
      char buf[32];
      std::snprintf(buf, sizeof buf, "%.17g", d);
      out_ += buf;
    } else if (PyDict_Check(o)) {
      enter(o);
      write_dict(o);
      leave();
    } else if (PyList_Check(o) || PyTuple_Check(o)) {
      enter(o);
      write_sequence(o);
      leave();
    } else if (py::isinstance(value, datetime_types())) {
      py::object iso = value.attr("isoformat")();
      detail::append_json_string(out_, text_view(iso, path_));
    } else {
      throw ValidationError(path_, std::string("cannot be sent as JSON (type ") + Py_TYPE(o)->tp_name + ")");
    }
  }

  void finish() {
    if (out_.size() > max_payload_bytes) too_large();
  }

 private:
  [[noreturn]] void too_large() const { throw ValidationError(path_.substr(0, root_size_), "larger than 256 KiB"); }

  /// Opens a container: refuses one already open on the current path, or one level too many.
  void enter(PyObject* container) {
    for (std::size_t i = 0; i < depth_; ++i) {
      if (open_[i] == container) throw ValidationError(path_, "contains itself");
    }
    if (depth_ >= open_.size()) {
      throw ValidationError(path_, "is nested deeper than " + std::to_string(max_payload_depth) + " levels");
    }
    open_[depth_++] = container;
  }
  void leave() { --depth_; }

  void write_dict(PyObject* dict) {
    out_ += '{';
    PyObject* key = nullptr;
    PyObject* item = nullptr;
    Py_ssize_t pos = 0;
    bool first = true;
    const auto base = path_.size();
    // PyDict_Next stays memory-safe if Python code run below (an isoformat()) changes the dict, as
    // long as the key and item are held; hence the owned references.
    while (PyDict_Next(dict, &pos, &key, &item)) {
      const auto k = py::reinterpret_borrow<py::object>(key);
      const auto v = py::reinterpret_borrow<py::object>(item);
      if (!PyUnicode_Check(key)) throw ValidationError(path_, "dictionary keys must be strings");
      if (!first) out_ += ',';
      first = false;
      path_ += '.';
      const Py_ssize_t bad = lone_surrogate_at(k);
      if (bad >= 0) {
        path_ += display_text(k);
        throw ValidationError(path_, "key " + surrogate_reason(bad));
      }
      const std::string_view name = text_view(k, path_);
      path_.append(name);
      detail::append_json_string(out_, name);
      out_ += ':';
      write(v);
      path_.resize(base);
    }
    out_ += '}';
  }

  void write_sequence(PyObject* seq) {
    out_ += '[';
    const bool is_list = PyList_Check(seq);
    const auto base = path_.size();
    // The size is read again each time: Python code run below may shrink a list.
    for (Py_ssize_t i = 0; i < (is_list ? PyList_GET_SIZE(seq) : PyTuple_GET_SIZE(seq)); ++i) {
      const auto item = py::reinterpret_borrow<py::object>(is_list ? PyList_GET_ITEM(seq, i) : PyTuple_GET_ITEM(seq, i));
      if (i != 0) out_ += ',';
      path_ += '[';
      path_ += std::to_string(i);
      path_ += ']';
      write(item);
      path_.resize(base);
    }
    out_ += ']';
  }

  std::string& out_;
  std::string& path_;
  const std::size_t root_size_;  ///< path_'s first root_size_ bytes: the field as the caller named it
  /// Containers on the current path, outermost first (borrowed); on the stack, as the depth is bounded.
  std::array<PyObject*, max_payload_depth> open_{};
  std::size_t depth_ = 0;
};

}  // namespace

void append_json(std::string& out, py::handle value, std::string& path) {
  JsonWriter writer(out, path);
  writer.write(value);
  writer.finish();
}

std::string to_json(py::handle value, std::string_view field) {
  std::string out;
  out.reserve(128);  // a recipient or a data object is usually this small: no regrowth
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
    case nlohmann::json::value_t::string: return to_py_text(j.get_ref<const std::string&>());
    case nlohmann::json::value_t::array: {
      py::list out(j.size());
      for (std::size_t i = 0; i < j.size(); ++i) out[i] = from_json(j[i]);
      return out;
    }
    case nlohmann::json::value_t::object: {
      py::dict out;
      for (const auto& [k, v] : j.items()) out[to_py_text(k)] = from_json(v);
      return out;
    }
    default: return py::none();
  }
}

py::object from_json_text(const std::string& text) {
  auto j = nlohmann::json::parse(text, nullptr, false);
  if (j.is_discarded()) return py::none();
  return from_json(j);
}

}  // namespace herald::bindings
