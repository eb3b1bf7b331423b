#pragma once
/// What a delivery receipt does to a notification: the decision, apart from any I/O.
#include <string>
#include <string_view>

#include "herald/event.hpp"
#include "herald/provider.hpp"

namespace herald {

/// The effect of one receipt, given the receipt already recorded on the notification.
struct ReceiptAction {
  bool ignore = false;          ///< stale or out of order: record nothing
  std::string receipt;          ///< the notification's new receipt ("" = keep the current one)
  EventKind event = EventKind::receipt;  ///< for the trace: delivered, delivery_failed, bounced, deferred, opened, opted_out, receipt
  std::string suppress_reason;  ///< "unusable" or "opted_out" when the address must not be used again; else ""
};

/// Receipts only move forward: none → delivered | failed | bounced → opened. A hard bounce may
/// follow "delivered" (mail bounces arrive late); progress after a final receipt is ignored.
[[nodiscard]] ReceiptAction decide_receipt(ReceiptStatus status, std::string_view current_receipt);

}  // namespace herald
