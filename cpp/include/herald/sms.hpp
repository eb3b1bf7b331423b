#pragma once
/// How many parts an SMS text is sent in, as carriers count them (3GPP TS 23.038 / 23.040).
#include <string_view>

namespace herald {

/// The encoding, size and parts of one SMS text.
struct SmsSegments {
  bool unicode = false;  ///< UCS-2: some character is outside the GSM 7-bit alphabet and its extension table
  int units = 0;         ///< septets (GSM-7, an extension-table character counts 2) or UTF-16 code units (UCS-2)
  int segments = 1;      ///< parts: GSM-7 160 in one part, 153 per part when split; UCS-2 70 and 67
};

/// Counts `utf8` (a pure function). A split never cuts an escape pair (GSM-7) or a surrogate pair
/// (UCS-2) in two, as phones and providers split: such a character moves whole to the next part.
/// An empty text is one part. Bytes that are not UTF-8 count as one UCS-2 unit each.
[[nodiscard]] SmsSegments sms_segments(std::string_view utf8) noexcept;

}  // namespace herald
