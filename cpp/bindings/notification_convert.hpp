#pragma once
/// A notification's dict from Python (send(), send_many()) as a herald::Notification
/// (notification_convert.cpp).
#include "pybind.hpp"

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "herald/notification.hpp"

namespace herald::bindings {

/// A field's name for errors ("notifications[3].recipient.id"), written into one buffer that
/// each item reuses: names are read only when a value is refused, and building a string per
/// field cost an allocation each (about seven per notification in send_many).
class FieldNames {
 public:
  /// The names of item `i` of a list, or of a lone notification (`i` < 0: no prefix).
  void start_item(std::ptrdiff_t i) {
    buf_.clear();
    if (i >= 0) {
      buf_ += "notifications[";
      buf_ += std::to_string(i);
      buf_ += "].";
    }
    base_ = buf_.size();
  }
  /// The item's prefix ("notifications[3]." or empty).
  [[nodiscard]] std::string prefix() const { return buf_.substr(0, base_); }
  /// `key` under the item's prefix; valid until the next call.
  std::string_view operator()(std::string_view key) {
    buf_.resize(base_);
    buf_ += key;
    return buf_;
  }

 private:
  std::string buf_;
  std::size_t base_ = 0;
};

/// One notification from the keyword form Python hands over; names fields as the caller wrote them.
/// `engine_now_ms`: the engine's clock, which a timedelta (send_at, expires_at) counts from.
Notification to_notification(const py::dict& dict, FieldNames& names, std::int64_t engine_now_ms);

}  // namespace herald::bindings
