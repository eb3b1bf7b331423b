#include "pybind.hpp"

#include "herald/event.hpp"
#include "herald/store.hpp"

/// The dicts that status(), trace(), dead_letters() and suppressions() answer, shared by the
/// engine and the read-only store so both say the same thing the same way.
namespace herald::bindings {

py::object ms_to_seconds(std::int64_t ms) {
  if (ms == 0) return py::none();
  return py::float_(static_cast<double>(ms) / 1000.0);
}

py::dict status_dict(const StoredNotification& s) {
  const Notification& n = s.notification;
  const DeliveryState& d = s.delivery;
  py::dict out;
  out["id"] = n.id;
  out["state"] = std::string(to_string(d.state));
  out["tenant"] = n.tenant;
  out["type"] = n.type;
  out["recipient_id"] = n.recipient_id;
  out["priority"] = std::string(to_string(n.priority));
  out["attempts"] = d.attempt;
  out["provider"] = d.provider.empty() ? py::object(py::none()) : py::object(to_py_text(d.provider));
  out["provider_message_id"] =
      d.provider_message_id.empty() ? py::object(py::none()) : py::object(to_py_text(d.provider_message_id));
  out["last_error"] = d.last_error.empty() ? py::object(py::none()) : py::object(to_py_text(d.last_error));
  out["in_doubt"] = d.in_doubt;
  out["idempotency_key"] = n.idempotency_key.empty() ? py::object(py::none()) : py::object(to_py_text(n.idempotency_key));
  out["ordering_key"] = n.ordering_key.empty() ? py::object(py::none()) : py::object(to_py_text(n.ordering_key));
  out["created_at"] = ms_to_seconds(n.created_at_ms);
  out["updated_at"] = ms_to_seconds(s.updated_at_ms);
  out["send_at"] = ms_to_seconds(n.send_at_ms);
  out["expires_at"] = ms_to_seconds(n.expires_at_ms);
  out["next_attempt_at"] = ms_to_seconds(d.state == State::retry_scheduled ? d.next_at_ms : 0);
  auto text_or_none = [](const std::string& v) { return v.empty() ? py::object(py::none()) : py::object(to_py_text(v)); };
  out["channel"] = text_or_none(d.channel);
  out["address"] = text_or_none(d.address);
  out["receipt"] = text_or_none(std::string(to_string(d.receipt)));
  out["receipt_at"] = ms_to_seconds(d.receipt_at_ms);
  out["cost"] = d.cost;
  return out;
}

py::dict event_dict(const Event& e) {
  py::dict out;
  out["id"] = e.notification_id;
  out["event"] = std::string(to_string(e.kind));
  out["at"] = static_cast<double>(e.ts_us) / 1e6;
  out["attempt"] = e.attempt;
  out["provider"] = e.provider.empty() ? py::object(py::none()) : py::object(to_py_text(e.provider));
  out["latency_ms"] = e.latency_us < 0 ? py::object(py::none()) : py::object(py::float_(static_cast<double>(e.latency_us) / 1000.0));
  out["http_status"] = e.http_status == 0 ? py::object(py::none()) : py::object(py::int_(e.http_status));
  out["detail"] = e.detail.empty() ? py::object(py::none()) : py::object(to_py_text(e.detail));
  out["step"] = e.step < 0 ? py::object(py::none()) : py::object(py::int_(e.step));
  return out;
}

py::dict suppression_dict(const Suppression& x) {
  py::dict d;
  d["channel"] = to_py_text(x.channel);
  d["address"] = to_py_text(x.address);
  d["reason"] = to_py_text(std::string(to_string(x.reason)));
  d["detail"] = to_py_text(x.detail);
  d["provider"] = to_py_text(x.provider);
  d["notification_id"] = x.notification_id;
  d["at"] = ms_to_seconds(x.at_ms);
  return d;
}

}  // namespace herald::bindings
