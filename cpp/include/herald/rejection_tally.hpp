#pragma once
/// Refused receipts counted by kind between flushes: a flood of forged or stale callbacks becomes
/// one "receipt_rejected" event per kind and interval, not one row each, so it cannot fill the disk.
#include <cstdint>
#include <map>
#include <string>
#include <tuple>
#include <vector>

#include "herald/event.hpp"

namespace herald {

class RejectionTally {
 public:
  /// Distinct (provider, status, reason) kinds kept between two drains; the rest are counted
  /// together as "other reasons" (the provider name and reason may come from the caller's URL).
  static constexpr std::size_t max_kinds = 64;
  static constexpr std::size_t max_text = 200;  ///< longer provider names and reasons are cut

  void add(const std::string& provider, int status, const std::string& reason, const std::string& remote,
           std::int64_t now_ms);
  /// One event per kind counted since the last drain (notification id 0), and forgets them.
  [[nodiscard]] std::vector<Event> drain();
  [[nodiscard]] bool empty() const { return kinds_.empty(); }
  /// Everything counted since construction.
  [[nodiscard]] std::uint64_t total() const { return total_; }

 private:
  struct Kind {
    std::uint64_t count = 0;
    std::int64_t first_ms = 0;
    std::int64_t last_ms = 0;
    std::string last_remote;
  };
  std::map<std::tuple<std::string, int, std::string>, Kind> kinds_;
  std::uint64_t total_ = 0;
};

}  // namespace herald
