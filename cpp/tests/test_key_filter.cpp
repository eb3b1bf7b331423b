#include <gtest/gtest.h>

#include <string>

#include "herald/idempotency_index.hpp"
#include "herald/key_filter.hpp"

namespace herald {
namespace {

std::uint64_t h(int i, const char* prefix = "k") {
  const std::string n = std::to_string(i);
  std::string recipient = "u";
  recipient += n;
  std::string key = prefix;
  key += n;
  return KeyFilter::hash("default", "otp", recipient, key);
}

TEST(KeyFilter, EveryAddedKeyIsMaybeAcrossLayers) {
  KeyFilter f;
  for (int i = 0; i < 300'000; ++i) f.add(h(i));  // past the first layer's 131,072: more layers
  EXPECT_GT(f.layers(), 1U);
  for (int i = 0; i < 300'000; ++i) ASSERT_TRUE(f.may_contain(h(i))) << i;
}

TEST(KeyFilter, OtherKeysAreMostlyCertainNos) {
  KeyFilter f;
  for (int i = 0; i < 300'000; ++i) f.add(h(i));
  int maybe = 0;
  for (int i = 0; i < 100'000; ++i) maybe += f.may_contain(h(i, "other")) ? 1 : 0;
  EXPECT_LT(maybe, 1'500);  // under 1.5 %
}

TEST(KeyFilter, AnEmptyFilterSaysNo) {
  KeyFilter f;
  EXPECT_FALSE(f.may_contain(h(1)));
}

TEST(KeyFilter, FieldsDoNotRunIntoEachOther) {
  EXPECT_NE(KeyFilter::hash("a", "bc", "d", "e"), KeyFilter::hash("ab", "c", "d", "e"));
  EXPECT_NE(KeyFilter::hash("t", "x", "u1", "k"), KeyFilter::hash("t", "x", "u", "1k"));
}

TEST(KeyFilter, SizedForWhatIsAlreadyStored) {
  KeyFilter f(1'000'000);
  EXPECT_EQ(f.layers(), 1U);
  EXPECT_LE(f.bytes(), 3'000'000U);  // 2 M keys of room at 11 bits each
}

TEST(IdempotencyIndex, AStoredKeyIsMaybeAndANewOneIsNot) {
  IdempotencyIndex index;
  const IdempotencyKey stored{"default", "otp", "u1", "k1"};
  const IdempotencyKey fresh{"default", "otp", "u1", "k2"};
  index.note_stored("default", "otp", "u1", "k1");
  EXPECT_TRUE(index.may_be_stored(stored));
  EXPECT_FALSE(index.may_be_stored(fresh));
  index.note_stored(fresh);
  EXPECT_TRUE(index.may_be_stored(fresh));
}

}  // namespace
}  // namespace herald
