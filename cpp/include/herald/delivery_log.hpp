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
  /// Pushes buffered lines to the OS (called after every group commit). When the disk refuses
  /// them, the segment is cut back to its last whole line and the lines stay buffered for the
  /// next flush (up to max_held_bytes; beyond that the oldest are dropped and counted). False then.
  bool flush();
  /// Lines dropped because the disk refused them for too long.
  [[nodiscard]] std::uint64_t dropped_lines() const { return dropped_lines_; }
  static constexpr std::size_t max_held_bytes = 64 << 20;
  [[nodiscard]] const std::filesystem::path& dir() const { return dir_; }

  /// The JSON line for one event, without the newline.
  [[nodiscard]] static std::string to_json_line(const Event& e);
  /// Appends the JSON line for one event to `out`, without the newline.
  static void append_line(std::string& out, const Event& e);

 private:
  void open_segment(std::int64_t first_seq);
  /// The most bytes write_line() can write for `e`.
  static std::size_t line_bound(const Event& e);
  /// Writes the line for `e` at `at` (room for line_bound(e) bytes): its end.
  static char* write_line(char* at, const Event& e);
  /// Forgets the first `bytes` of the held lines.
  void drop_front(std::size_t bytes);

  std::filesystem::path dir_;
  std::int64_t segment_bytes_;
  std::int64_t written_ = 0;
  int fd_ = -1;
  std::int64_t on_disk_ = 0;  ///< bytes of the segment known to be written (a short write is cut back to it)
  /// Lines not yet written: the first `used_` bytes. Its size only grows, so a line is written
  /// into room already there instead of room zero-filled for it each time.
  std::string buffer_;
  std::size_t used_ = 0;
  std::uint64_t dropped_lines_ = 0;
};

}  // namespace herald
