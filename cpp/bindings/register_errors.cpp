#include "pybind.hpp"

#include "herald/errors.hpp"

namespace herald::bindings {

namespace {

/// Creates herald._core.<name> deriving from `bases` (a tuple or one class); the module keeps it alive.
py::handle new_exception(py::module_& m, const char* name, PyObject* bases) {
  const std::string qualified = std::string("herald._core.") + name;
  PyObject* cls = PyErr_NewException(qualified.c_str(), bases, nullptr);
  if (cls == nullptr) throw py::error_already_set();
  m.add_object(name, py::handle(cls));  // steals nothing: add_object increfs
  return py::handle(cls);
}

py::handle base_error, validation_error, idempotency_conflict, not_found, invalid_state, config_error,
    store_error, engine_closed;

/// Raises `cls` with the whole message as a Python str (text that is not UTF-8 reads as \xNN), and
/// `.field` when there is one. Never lets a second error escape: a failure here is what gets raised.
void raise_error(py::handle cls, const char* message, const std::string* field) {
  try {
    py::str text = to_py_text(message);
    py::object exc = py::reinterpret_steal<py::object>(PyObject_CallOneArg(cls.ptr(), text.ptr()));
    if (!exc) return;  // the call set its own error
    if (field != nullptr && PyObject_SetAttrString(exc.ptr(), "field", to_py_text(*field).ptr()) != 0) return;
    PyErr_SetObject(cls.ptr(), exc.ptr());
  } catch (py::error_already_set& e) {
    e.restore();
  }
}

/// The field of a ConfigError built from one text "<field>: <reason>": the part before ": " when it
/// has no space (so "providers.sms.url"), else none.
std::string config_field(const ConfigError& e) {
  if (!e.field().empty()) return e.field();
  const std::string_view what = e.what();
  const auto colon = what.find(": ");
  if (colon == std::string_view::npos || what.substr(0, colon).find(' ') != std::string_view::npos) return {};
  return std::string(what.substr(0, colon));
}

}  // namespace

void fail(ErrorKind kind, std::string field, const std::string& reason) {
  if (kind == ErrorKind::config) throw ConfigError(std::move(field), reason);
  throw ValidationError(std::move(field), reason);
}

void register_errors(py::module_& m) {
  base_error = new_exception(m, "HeraldError", PyExc_Exception);
  auto pair = [](py::handle a, PyObject* b) {
    return py::make_tuple(a, py::handle(b));
  };
  py::tuple v = pair(base_error, PyExc_ValueError);
  validation_error = new_exception(m, "ValidationError", v.ptr());
  py::tuple ic = pair(base_error, PyExc_ValueError);
  idempotency_conflict = new_exception(m, "IdempotencyConflict", ic.ptr());
  py::tuple nf = pair(base_error, PyExc_KeyError);
  not_found = new_exception(m, "NotFound", nf.ptr());
  invalid_state = new_exception(m, "InvalidState", base_error.ptr());
  config_error = new_exception(m, "ConfigError", base_error.ptr());
  store_error = new_exception(m, "StoreError", base_error.ptr());
  py::tuple ec = pair(base_error, PyExc_RuntimeError);
  engine_closed = new_exception(m, "EngineClosed", ec.ptr());
  // Every ValidationError and ConfigError has a .field: None unless the raiser named one.
  validation_error.attr("field") = py::none();
  config_error.attr("field") = py::none();

  // The one translator: every core error class to its named Python exception.
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const ValidationError& e) {
      raise_error(validation_error, e.what(), &e.field());
    } catch (const IdempotencyConflict& e) {
      raise_error(idempotency_conflict, e.what(), nullptr);
    } catch (const NotFound& e) {
      raise_error(not_found, e.what(), nullptr);
    } catch (const InvalidState& e) {
      raise_error(invalid_state, e.what(), nullptr);
    } catch (const ConfigError& e) {
      const std::string field = config_field(e);
      raise_error(config_error, e.what(), field.empty() ? nullptr : &field);
    } catch (const StoreError& e) {
      raise_error(store_error, e.what(), nullptr);
    } catch (const EngineClosed& e) {
      raise_error(engine_closed, e.what(), nullptr);
    } catch (const Error& e) {
      raise_error(base_error, e.what(), nullptr);
    }
  });
}

}  // namespace herald::bindings
