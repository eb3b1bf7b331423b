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

void raise_with_field(py::handle cls, const ValidationError& e) {
  py::object exc = py::reinterpret_steal<py::object>(PyObject_CallFunction(cls.ptr(), "s", e.what()));
  if (!exc) return;  // the call set its own error
  PyObject_SetAttrString(exc.ptr(), "field", py::str(e.field()).ptr());
  PyErr_SetObject(cls.ptr(), exc.ptr());
}

}  // namespace

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

  // The one translator: every core error class to its named Python exception.
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const ValidationError& e) {
      raise_with_field(validation_error, e);
    } catch (const IdempotencyConflict& e) {
      PyErr_SetString(idempotency_conflict.ptr(), e.what());
    } catch (const NotFound& e) {
      PyErr_SetString(not_found.ptr(), e.what());
    } catch (const InvalidState& e) {
      PyErr_SetString(invalid_state.ptr(), e.what());
    } catch (const ConfigError& e) {
      PyErr_SetString(config_error.ptr(), e.what());
    } catch (const StoreError& e) {
      PyErr_SetString(store_error.ptr(), e.what());
    } catch (const EngineClosed& e) {
      PyErr_SetString(engine_closed.ptr(), e.what());
    } catch (const Error& e) {
      PyErr_SetString(base_error.ptr(), e.what());
    }
  });
}

}  // namespace herald::bindings
