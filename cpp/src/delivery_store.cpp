#include "herald/delivery_store.hpp"

#include <array>

namespace herald {

namespace {

constexpr std::array<std::string_view, 6> receipt_names = {"", "delivered", "failed", "bounced", "opened", "unconfirmed"};
constexpr std::array<std::string_view, 2> reason_names = {"unusable", "opted_out"};

}  // namespace

std::string_view to_string(ReceiptState r) noexcept {
  const auto i = static_cast<std::size_t>(r);
  return i < receipt_names.size() ? receipt_names[i] : "";
}

ReceiptState parse_receipt_state(std::string_view name) noexcept {
  for (std::size_t i = 1; i < receipt_names.size(); ++i) {
    if (receipt_names[i] == name) return static_cast<ReceiptState>(i);
  }
  return ReceiptState::none;
}

std::string_view to_string(SuppressionReason r) noexcept {
  const auto i = static_cast<std::size_t>(r);
  return i < reason_names.size() ? reason_names[i] : "unusable";
}

SuppressionReason parse_suppression_reason(std::string_view name) noexcept {
  return name == "opted_out" ? SuppressionReason::opted_out : SuppressionReason::unusable;
}

}  // namespace herald
