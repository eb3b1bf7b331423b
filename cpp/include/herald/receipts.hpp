#pragma once
/// What a delivery receipt does to a notification: the decision, apart from any I/O.
#include <optional>
#include <string>
#include <string_view>

#include "herald/delivery_store.hpp"
#include "herald/event.hpp"
#include "herald/provider.hpp"

namespace herald {

/// The effect of one receipt, given the receipt already recorded on the notification.
struct ReceiptAction {
  bool ignore = false;          ///< stale or out of order: record nothing
  ReceiptState receipt = ReceiptState::none;  ///< the notification's new receipt (none = keep the current one)
  EventKind event = EventKind::receipt;  ///< for the trace: delivered, delivery_failed, bounced, deferred, opened, opted_out, receipt
  std::optional<SuppressionReason> suppress;  ///< when the address must not be used again
};

/// Receipts only move forward: none → delivered | failed | bounced → opened. A hard bounce may
/// follow "delivered" (mail bounces arrive late); progress after a final receipt is ignored.
[[nodiscard]] ReceiptAction decide_receipt(ReceiptStatus status, ReceiptState current_receipt);

}  // namespace herald
