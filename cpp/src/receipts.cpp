#include "herald/receipts.hpp"

namespace herald {

namespace {

/// 0 = none, 1 = final (delivered, failed, bounced), 2 = opened.
int rank(std::string_view receipt) {
  if (receipt.empty()) return 0;
  if (receipt == "opened") return 2;
  return 1;
}

}  // namespace

ReceiptAction decide_receipt(ReceiptStatus status, std::string_view current) {
  ReceiptAction a;
  const int r = rank(current);
  switch (status) {
    case ReceiptStatus::progress:
      a.event = EventKind::receipt;
      a.ignore = r > 0;
      break;
    case ReceiptStatus::delivered:
      a.event = EventKind::delivered;
      a.receipt = "delivered";
      a.ignore = r > 0;
      break;
    case ReceiptStatus::failed:
      a.event = EventKind::delivery_failed;
      a.receipt = "failed";
      a.ignore = r > 0;
      break;
    case ReceiptStatus::bounced_hard:
      a.event = EventKind::bounced;
      a.receipt = "bounced";
      a.suppress_reason = "unusable";
      a.ignore = current == "bounced" || current == "failed";
      break;
    case ReceiptStatus::bounced_soft:
      a.event = EventKind::deferred;
      a.ignore = r > 0;
      break;
    case ReceiptStatus::opened:
      a.event = EventKind::opened;
      a.receipt = "opened";
      a.ignore = current == "opened" || current == "bounced" || current == "failed";
      break;
    case ReceiptStatus::opted_out:
      a.event = EventKind::opted_out;
      a.suppress_reason = "opted_out";
      break;
  }
  return a;
}

}  // namespace herald
