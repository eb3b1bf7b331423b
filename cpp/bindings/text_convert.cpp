#include "pybind.hpp"

/// Checked conversion of Python str to UTF-8 and back: the one way user text crosses the boundary.

namespace herald::bindings {

namespace {

/// `text` cut to at most `limit` bytes without splitting a UTF-8 sequence, "..." added when cut.
std::string shorten(std::string text, std::size_t limit) {
  if (text.size() <= limit) return text;
  std::size_t end = limit;
  while (end > 0 && (static_cast<unsigned char>(text[end]) & 0xC0U) == 0x80U) --end;
  text.resize(end);
  text += "...";
  return text;
}

/// UTF-8 of a str with lone surrogates written as \udcXX; never fails short of memory.
std::string escaped_utf8(PyObject* str) {
  py::object bytes = py::reinterpret_steal<py::object>(PyUnicode_AsEncodedString(str, "utf-8", "backslashreplace"));
  if (!bytes) {
    PyErr_Clear();
    return "<text>";
  }
  return {PyBytes_AS_STRING(bytes.ptr()), static_cast<std::size_t>(PyBytes_GET_SIZE(bytes.ptr()))};
}

}  // namespace

Py_ssize_t lone_surrogate_at(py::handle str) {
  PyObject* s = str.ptr();
  if (PyUnicode_KIND(s) == PyUnicode_1BYTE_KIND) return -1;  // Latin-1 only: no surrogates possible
  const Py_ssize_t n = PyUnicode_GET_LENGTH(s);
  for (Py_ssize_t i = 0; i < n; ++i) {
    const Py_UCS4 c = PyUnicode_READ_CHAR(s, i);
    if (c >= 0xD800 && c <= 0xDFFF) return i;
  }
  return -1;
}

std::string surrogate_reason(Py_ssize_t index) {
  return "must be valid UTF-8 text (lone surrogate at index " + std::to_string(index) + ")";
}

std::string_view text_view(py::handle value, std::string_view field, ErrorKind kind) {
  PyObject* o = value.ptr();
  if (!PyUnicode_Check(o)) {
    fail(kind, std::string(field), std::string("must be a string (got ") + Py_TYPE(o)->tp_name + ")");
  }
  Py_ssize_t size = 0;
  const char* data = PyUnicode_AsUTF8AndSize(o, &size);
  if (data != nullptr) return {data, static_cast<std::size_t>(size)};
  if (!PyErr_ExceptionMatches(PyExc_UnicodeEncodeError)) throw py::error_already_set();
  PyErr_Clear();
  fail(kind, std::string(field), surrogate_reason(lone_surrogate_at(value)));
}

std::string to_text(py::handle value, std::string_view field, ErrorKind kind) {
  return std::string(text_view(value, field, kind));
}

std::string display_text(py::handle value) {
  if (PyUnicode_Check(value.ptr())) return escaped_utf8(value.ptr());
  py::object text = py::reinterpret_steal<py::object>(PyObject_Str(value.ptr()));
  if (!text) {
    PyErr_Clear();
    return std::string("<") + Py_TYPE(value.ptr())->tp_name + ">";
  }
  return escaped_utf8(text.ptr());
}

std::string brief_text(py::handle value, std::size_t limit) {
  return shorten(display_text(value), limit);
}

py::str to_py_text(std::string_view text) {
  PyObject* s = PyUnicode_DecodeUTF8(text.data(), static_cast<Py_ssize_t>(text.size()), "backslashreplace");
  if (s == nullptr) throw py::error_already_set();
  return py::reinterpret_steal<py::str>(s);
}

}  // namespace herald::bindings
