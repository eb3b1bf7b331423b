// SMS parts: GSM-7 160/153 with the extension table counting double, UCS-2 70/67 in UTF-16 units.
#include <gtest/gtest.h>

#include <string>

#include "herald/sms.hpp"

using herald::sms_segments;

namespace {

std::string times(const std::string& s, int n) {
  std::string out;
  for (int i = 0; i < n; ++i) out += s;
  return out;
}

}  // namespace

TEST(SmsSegments, GsmSevenFitsOneToOneHundredSixty) {
  EXPECT_EQ(sms_segments("").segments, 1);
  const auto one = sms_segments(times("a", 160));
  EXPECT_FALSE(one.unicode);
  EXPECT_EQ(one.units, 160);
  EXPECT_EQ(one.segments, 1);
  EXPECT_EQ(sms_segments(times("a", 161)).segments, 2);
  EXPECT_EQ(sms_segments(times("a", 306)).segments, 2);  // 2 × 153
  EXPECT_EQ(sms_segments(times("a", 307)).segments, 3);
}

TEST(SmsSegments, TheBasicAlphabetBeyondAsciiStaysGsmSeven) {
  const auto s = sms_segments("Ça coûte 5 £ à Øresund? ¿Qué? ÄÖÑÜ§ Δ_ΦΓΛΩΠΨΣΘΞ ß É @ ¥");
  // û is not in GSM-7: the whole text goes UCS-2.
  EXPECT_TRUE(s.unicode);
  const auto g = sms_segments("Ca coute 5 £ a Øresund? ¿Qué? ÄÖÑÜ§ Δ_ΦΓΛΩΠΨΣΘΞ ß É @ ¥ è é ù ì ò");
  EXPECT_FALSE(g.unicode);
  EXPECT_EQ(g.units, 65);
}

TEST(SmsSegments, ExtensionCharactersCountTwoSeptets) {
  const auto s = sms_segments("{}[]~^|\\€\f");
  EXPECT_FALSE(s.unicode);
  EXPECT_EQ(s.units, 20);
  EXPECT_EQ(sms_segments(times("€", 80)).segments, 1);   // 160 septets
  EXPECT_EQ(sms_segments(times("€", 81)).segments, 2);   // 162
  EXPECT_EQ(sms_segments(times("a", 1) + times("€", 80)).segments, 2);
}

TEST(SmsSegments, AnEscapePairIsNeverSplitAcrossParts) {
  // 152 plain septets then one € (2 septets) does not fit the first 153-septet part whole: it
  // opens the second part, whose 153 septets then overflow into a third.
  const auto s = sms_segments(times("a", 152) + "€" + times("a", 152));
  EXPECT_EQ(s.units, 306);       // two parts' worth of septets...
  EXPECT_EQ(s.segments, 3);      // ...yet three parts
  EXPECT_EQ(sms_segments(times("a", 151) + "€" + times("a", 153)).segments, 2);
}

TEST(SmsSegments, UcsTwoCountsUtf16Units) {
  const auto one = sms_segments(times("ж", 70));
  EXPECT_TRUE(one.unicode);
  EXPECT_EQ(one.units, 70);
  EXPECT_EQ(one.segments, 1);
  EXPECT_EQ(sms_segments(times("ж", 71)).segments, 2);
  EXPECT_EQ(sms_segments(times("ж", 134)).segments, 2);  // 2 × 67
  EXPECT_EQ(sms_segments(times("ж", 135)).segments, 3);
  // One character outside GSM-7 turns the whole text into UCS-2: 100 letters are 2 parts then.
  EXPECT_EQ(sms_segments(times("a", 100)).segments, 1);
  EXPECT_EQ(sms_segments(times("a", 99) + "ж").segments, 2);
}

TEST(SmsSegments, AnEmojiIsTwoUnitsAndItsPairIsNotSplit) {
  const auto e = sms_segments("\xF0\x9F\x99\x82");  // U+1F642: a surrogate pair
  EXPECT_TRUE(e.unicode);
  EXPECT_EQ(e.units, 2);
  EXPECT_EQ(sms_segments(times("\xF0\x9F\x99\x82", 35)).segments, 1);  // 70 units
  EXPECT_EQ(sms_segments(times("\xF0\x9F\x99\x82", 36)).segments, 2);  // 72 units: 33 pairs (66), then 3
  // 134 units would fill two parts of 67 exactly, but the pair cannot straddle the first part's
  // end: 66, then 2 + 65, then 1.
  const auto split = sms_segments(times("ж", 66) + "\xF0\x9F\x99\x82" + times("ж", 66));
  EXPECT_EQ(split.units, 134);
  EXPECT_EQ(split.segments, 3);
}

TEST(SmsSegments, BytesThatAreNotUtf8CountAsOneUnitEach) {
  const auto s = sms_segments(std::string("ab\xFF", 3));
  EXPECT_TRUE(s.unicode);
  EXPECT_EQ(s.units, 3);
  EXPECT_EQ(sms_segments(std::string("\xC3", 1)).units, 1);  // a truncated sequence
}
