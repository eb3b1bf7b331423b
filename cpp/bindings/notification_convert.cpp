#include "pybind.hpp"

#include "notification_convert.hpp"

/// The keyword form of a notification (a dict) to herald::Notification: each field read once,
/// checked, and named in errors as the caller wrote it.

#include "herald/errors.hpp"

namespace herald::bindings {

namespace {

/// The keys of the keyword form, interned once: lookups then skip building a str per call.
struct FieldKeys {
  PyObject* type = PyUnicode_InternFromString("type");
  PyObject* recipient = PyUnicode_InternFromString("recipient");
  PyObject* data = PyUnicode_InternFromString("data");
  PyObject* priority = PyUnicode_InternFromString("priority");
  PyObject* idempotency_key = PyUnicode_InternFromString("idempotency_key");
  PyObject* ordering_key = PyUnicode_InternFromString("ordering_key");
  PyObject* send_at = PyUnicode_InternFromString("send_at");
  PyObject* expires_at = PyUnicode_InternFromString("expires_at");
  PyObject* tenant = PyUnicode_InternFromString("tenant");
  PyObject* id = PyUnicode_InternFromString("id");
};

const FieldKeys& keys() {
  static const auto* k = new FieldKeys();  // leaked on purpose: outlives the interpreter's teardown
  return *k;
}

/// Borrowed value of `key`, or nullptr when absent or None.
PyObject* field(PyObject* d, PyObject* key) {
  PyObject* v = PyDict_GetItemWithError(d, key);
  if (v == nullptr && PyErr_Occurred() != nullptr) throw py::error_already_set();
  return v == Py_None ? nullptr : v;
}

/// A text field's value (`v`: borrowed, nullptr when absent or None), named `key` in errors.
std::string text_field(PyObject* v, PyObject* key, FieldNames& names, bool required) {
  const std::string_view name = names(PyUnicode_AsUTF8(key));  // an interned ASCII key
  if (v == nullptr) {
    if (required) throw ValidationError(std::string(name), "is required");
    return {};
  }
  return to_text(v, name);
}

/// The fields of one notification's dict, read in one pass over it: each value is borrowed, and
/// nullptr when the field is absent or None. Asking the dict for each of the nine names, and then
/// whether it held any other, took eighteen hashed lookups per notification.
struct NotificationFields {
  enum Slot { type, recipient, data, priority, idempotency_key, ordering_key, send_at, expires_at, tenant, count };
  PyObject* at[count] = {};

  NotificationFields(PyObject* d, const FieldKeys& k, const FieldNames& names) {
    const PyObject* const keys[count] = {k.type,         k.recipient, k.data,       k.priority, k.idempotency_key,
                                         k.ordering_key, k.send_at,   k.expires_at, k.tenant};
    PyObject* key = nullptr;
    PyObject* value = nullptr;
    Py_ssize_t pos = 0;
    while (PyDict_Next(d, &pos, &key, &value)) {
      int slot = find(keys, key);
      if (slot < 0 && PyUnicode_Check(key)) {
        // A name built at run time is equal to ours without being the same object. Only a str can
        // be a field name; PyUnicode_Compare of two str cannot fail.
        for (int i = 0; i < count && slot < 0; ++i) {
          if (PyUnicode_Compare(key, const_cast<PyObject*>(keys[i])) == 0) slot = i;
        }
      }
      if (slot < 0) throw ValidationError(names.prefix() + display_text(key), "unknown field");
      at[slot] = value == Py_None ? nullptr : value;
    }
  }

 private:
  static int find(const PyObject* const (&keys)[count], const PyObject* key) {
    for (int i = 0; i < count; ++i) {
      if (keys[i] == key) return i;  // the literal names of a caller's dict are interned: the same objects
    }
    return -1;
  }
};

}  // namespace

Notification to_notification(const py::dict& dict, FieldNames& names, std::int64_t engine_now_ms) {
  const FieldKeys& k = keys();
  using F = NotificationFields;
  const F f(dict.ptr(), k, names);
  Notification n;
  n.type = text_field(f.at[F::type], k.type, names, true);
  std::string tenant = text_field(f.at[F::tenant], k.tenant, names, false);
  if (!tenant.empty()) n.tenant = std::move(tenant);
  PyObject* r = f.at[F::recipient];
  if (r == nullptr) throw ValidationError(std::string(names("recipient")), "is required");
  if (PyUnicode_Check(r)) {
    n.recipient_id = to_text(r, names("recipient"));
    n.recipient_json = "{\"id\":" + to_json(r, names("recipient")) + "}";
  } else if (PyDict_Check(r)) {
    PyObject* rid = field(r, k.id);
    if (rid == nullptr) throw ValidationError(std::string(names("recipient.id")), "is required");
    n.recipient_id = to_text(rid, names("recipient.id"));
    n.recipient_json = to_json(r, names("recipient"));
  } else {
    throw ValidationError(std::string(names("recipient")), "must be a user id (str) or a dict with an 'id'");
  }
  if (PyObject* data = f.at[F::data]) {
    if (!PyDict_Check(data)) throw ValidationError(std::string(names("data")), "must be a dict");
    n.data_json = to_json(data, names("data"));
  }
  std::string priority = text_field(f.at[F::priority], k.priority, names, false);
  if (!priority.empty()) {
    try {
      n.priority = parse_priority(priority);
    } catch (const ValidationError& e) {
      throw ValidationError(std::string(names("priority")), std::string(e.what()).substr(std::string("priority: ").size()));
    }
  }
  n.idempotency_key = text_field(f.at[F::idempotency_key], k.idempotency_key, names, false);
  n.ordering_key = text_field(f.at[F::ordering_key], k.ordering_key, names, false);
  if (PyObject* v = f.at[F::send_at]) n.send_at_ms = to_epoch_ms(v, names("send_at"), engine_now_ms);
  if (PyObject* v = f.at[F::expires_at]) n.expires_at_ms = to_epoch_ms(v, names("expires_at"), engine_now_ms);
  return n;
}

}  // namespace herald::bindings
