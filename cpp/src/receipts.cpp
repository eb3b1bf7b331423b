#include "herald/receipts.hpp"

namespace herald {

namespace {

/// 0 = none, 1 = final (delivered, failed, bounced), 2 = opened.
int rank(ReceiptState receipt) {
  if (receipt == ReceiptState::none) return 0;
  if (receipt == ReceiptState::opened) return 2;
  return 1;
}

}  // namespace

ReceiptAction decide_receipt(ReceiptStatus status, ReceiptState current) {
  ReceiptAction a;
  const int r = rank(current);
  switch (status) {
    case ReceiptStatus::progress:
      a.event = EventKind::receipt;
      a.ignore = r > 0;
      break;
    case ReceiptStatus::delivered:
      a.event = EventKind::delivered;
      a.receipt = ReceiptState::delivered;
      a.ignore = r > 0;
      break;
    case ReceiptStatus::failed:
      a.event = EventKind::delivery_failed;
      a.receipt = ReceiptState::failed;
      a.ignore = r > 0;
      break;
    case ReceiptStatus::bounced_hard:
      a.event = EventKind::bounced;
      a.receipt = ReceiptState::bounced;
      a.suppress = SuppressionReason::unusable;
      a.ignore = current == ReceiptState::bounced || current == ReceiptState::failed;
      break;
    case ReceiptStatus::bounced_soft:
      a.event = EventKind::deferred;
      a.ignore = r > 0;
      break;
    case ReceiptStatus::opened:
      a.event = EventKind::opened;
      a.receipt = ReceiptState::opened;
      a.ignore = current == ReceiptState::opened || current == ReceiptState::bounced || current == ReceiptState::failed;
      break;
    case ReceiptStatus::opted_out:
      a.event = EventKind::opted_out;
      a.suppress = SuppressionReason::opted_out;
      break;
  }
  return a;
}

}  // namespace herald
