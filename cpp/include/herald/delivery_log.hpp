#pragma once
/// The delivery log on disk for analysis: JSON Lines segments under <data_dir>/log/.
///
/// One line per event; a segment is closed at `segment_bytes` and the next one opened, named by
/// the sequence number of its first event so that a lexical sort is the time order.
/// Not thread-safe: the store's writer thread is its only user.
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>

#include "herald/event.hpp"

namespace herald {

class DeliveryLog {
 public:
  DeliveryLog(std::filesystem::path dir, std::int64_t segment_bytes);
  ~DeliveryLog();
  DeliveryLog(const DeliveryLog&) = delete;
  DeliveryLog& operator=(const DeliveryLog&) = delete;

  void append(const Event& e);
  /// Pushes buffered lines to the OS (called after every group commit).
  void flush();
  [[nodiscard]] const std::filesystem::path& dir() const { return dir_; }

  /// The JSON line for one event, without the newline.
  [[nodiscard]] static std::string to_json_line(const Event& e);
  /// Appends the JSON line for one event to `out`, without the newline.
  static void append_line(std::string& out, const Event& e);

 private:
  void open_segment(std::int64_t first_seq);

  std::filesystem::path dir_;
  std::int64_t segment_bytes_;
  std::int64_t written_ = 0;
  std::FILE* file_ = nullptr;
  std::string buffer_;
};

}  // namespace herald
