#include <gtest/gtest.h>

#include "herald/receipts.hpp"

using herald::decide_receipt;
using herald::ReceiptState;
using herald::ReceiptStatus;
using herald::SuppressionReason;

TEST(ReceiptRules, FirstFinalReceiptIsRecorded) {
  auto a = decide_receipt(ReceiptStatus::delivered, ReceiptState::none);
  EXPECT_FALSE(a.ignore);
  EXPECT_EQ(a.receipt, ReceiptState::delivered);
  EXPECT_EQ(a.event, herald::EventKind::delivered);
  EXPECT_FALSE(a.suppress.has_value());

  a = decide_receipt(ReceiptStatus::failed, ReceiptState::none);
  EXPECT_EQ(a.receipt, ReceiptState::failed);
  EXPECT_EQ(a.event, herald::EventKind::delivery_failed);
}

TEST(ReceiptRules, ProgressAfterAFinalReceiptIsIgnored) {
  EXPECT_FALSE(decide_receipt(ReceiptStatus::progress, ReceiptState::none).ignore);
  EXPECT_EQ(decide_receipt(ReceiptStatus::progress, ReceiptState::none).receipt, ReceiptState::none);
  EXPECT_TRUE(decide_receipt(ReceiptStatus::progress, ReceiptState::delivered).ignore);
  EXPECT_TRUE(decide_receipt(ReceiptStatus::bounced_soft, ReceiptState::delivered).ignore);
  EXPECT_TRUE(decide_receipt(ReceiptStatus::delivered, ReceiptState::delivered).ignore);
  EXPECT_TRUE(decide_receipt(ReceiptStatus::delivered, ReceiptState::opened).ignore);
}

TEST(ReceiptRules, HardBounceMakesTheAddressUnusableEvenAfterDelivered) {
  auto a = decide_receipt(ReceiptStatus::bounced_hard, ReceiptState::delivered);
  EXPECT_FALSE(a.ignore);
  EXPECT_EQ(a.receipt, ReceiptState::bounced);
  EXPECT_EQ(a.suppress, SuppressionReason::unusable);
  EXPECT_TRUE(decide_receipt(ReceiptStatus::bounced_hard, ReceiptState::bounced).ignore);
}

TEST(ReceiptRules, SoftBounceIsRecordedButNotFinal) {
  auto a = decide_receipt(ReceiptStatus::bounced_soft, ReceiptState::none);
  EXPECT_FALSE(a.ignore);
  EXPECT_EQ(a.event, herald::EventKind::deferred);
  EXPECT_EQ(a.receipt, ReceiptState::none);
  EXPECT_FALSE(a.suppress.has_value());
}

TEST(ReceiptRules, OpenedFollowsDeliveredButNotABounce) {
  EXPECT_EQ(decide_receipt(ReceiptStatus::opened, ReceiptState::delivered).receipt, ReceiptState::opened);
  EXPECT_EQ(decide_receipt(ReceiptStatus::opened, ReceiptState::none).receipt, ReceiptState::opened);
  EXPECT_TRUE(decide_receipt(ReceiptStatus::opened, ReceiptState::bounced).ignore);
  EXPECT_TRUE(decide_receipt(ReceiptStatus::opened, ReceiptState::opened).ignore);
}

TEST(ReceiptRules, OptOutIsAlwaysRecorded) {
  for (const ReceiptState current : {ReceiptState::none, ReceiptState::delivered, ReceiptState::opened, ReceiptState::bounced}) {
    auto a = decide_receipt(ReceiptStatus::opted_out, current);
    EXPECT_FALSE(a.ignore) << herald::to_string(current);
    EXPECT_EQ(a.suppress, SuppressionReason::opted_out);
    EXPECT_EQ(a.receipt, ReceiptState::none);
  }
}

TEST(ReceiptRules, ReceiptAndReasonNamesRoundTrip) {
  for (int i = 0; i <= static_cast<int>(ReceiptState::unconfirmed); ++i) {
    const auto r = static_cast<ReceiptState>(i);
    EXPECT_EQ(herald::parse_receipt_state(herald::to_string(r)), r);
  }
  EXPECT_EQ(herald::to_string(ReceiptState::none), "");
  EXPECT_EQ(herald::parse_receipt_state("no-such"), ReceiptState::none);
  EXPECT_EQ(herald::parse_suppression_reason("opted_out"), SuppressionReason::opted_out);
  EXPECT_EQ(herald::parse_suppression_reason(herald::to_string(SuppressionReason::unusable)), SuppressionReason::unusable);
}
