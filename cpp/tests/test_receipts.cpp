#include <gtest/gtest.h>

#include "herald/receipts.hpp"

using herald::decide_receipt;
using herald::ReceiptStatus;

TEST(ReceiptRules, FirstFinalReceiptIsRecorded) {
  auto a = decide_receipt(ReceiptStatus::delivered, "");
  EXPECT_FALSE(a.ignore);
  EXPECT_EQ(a.receipt, "delivered");
  EXPECT_EQ(a.event, herald::EventKind::delivered);
  EXPECT_TRUE(a.suppress_reason.empty());

  a = decide_receipt(ReceiptStatus::failed, "");
  EXPECT_EQ(a.receipt, "failed");
  EXPECT_EQ(a.event, herald::EventKind::delivery_failed);
}

TEST(ReceiptRules, ProgressAfterAFinalReceiptIsIgnored) {
  EXPECT_FALSE(decide_receipt(ReceiptStatus::progress, "").ignore);
  EXPECT_TRUE(decide_receipt(ReceiptStatus::progress, "").receipt.empty());
  EXPECT_TRUE(decide_receipt(ReceiptStatus::progress, "delivered").ignore);
  EXPECT_TRUE(decide_receipt(ReceiptStatus::bounced_soft, "delivered").ignore);
  EXPECT_TRUE(decide_receipt(ReceiptStatus::delivered, "delivered").ignore);
  EXPECT_TRUE(decide_receipt(ReceiptStatus::delivered, "opened").ignore);
}

TEST(ReceiptRules, HardBounceMakesTheAddressUnusableEvenAfterDelivered) {
  auto a = decide_receipt(ReceiptStatus::bounced_hard, "delivered");
  EXPECT_FALSE(a.ignore);
  EXPECT_EQ(a.receipt, "bounced");
  EXPECT_EQ(a.suppress_reason, "unusable");
  EXPECT_TRUE(decide_receipt(ReceiptStatus::bounced_hard, "bounced").ignore);
}

TEST(ReceiptRules, SoftBounceIsRecordedButNotFinal) {
  auto a = decide_receipt(ReceiptStatus::bounced_soft, "");
  EXPECT_FALSE(a.ignore);
  EXPECT_EQ(a.event, herald::EventKind::deferred);
  EXPECT_TRUE(a.receipt.empty());
  EXPECT_TRUE(a.suppress_reason.empty());
}

TEST(ReceiptRules, OpenedFollowsDeliveredButNotABounce) {
  EXPECT_EQ(decide_receipt(ReceiptStatus::opened, "delivered").receipt, "opened");
  EXPECT_EQ(decide_receipt(ReceiptStatus::opened, "").receipt, "opened");
  EXPECT_TRUE(decide_receipt(ReceiptStatus::opened, "bounced").ignore);
  EXPECT_TRUE(decide_receipt(ReceiptStatus::opened, "opened").ignore);
}

TEST(ReceiptRules, OptOutIsAlwaysRecorded) {
  for (const char* current : {"", "delivered", "opened", "bounced"}) {
    auto a = decide_receipt(ReceiptStatus::opted_out, current);
    EXPECT_FALSE(a.ignore) << current;
    EXPECT_EQ(a.suppress_reason, "opted_out");
    EXPECT_TRUE(a.receipt.empty());
  }
}
