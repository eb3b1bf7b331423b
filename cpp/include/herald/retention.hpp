#pragma once
/// Retention: how long final notifications, their events and the delivery log's segments are kept,
/// and the thread that prunes them off the hot path.
///
/// The decisions (what is past its time or over its size) are pure functions of their inputs and
/// the time; `Retention` is the thin shell that runs them every `interval` on its own thread.
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "herald/store.hpp"

namespace herald {

/// Limits on what is kept. A limit of 0 is "no limit" for that dimension.
struct RetentionOptions {
  /// Final notifications (completed, expired, dead-lettered, cancelled, suppressed) and their events
  /// are deleted once created and last changed longer ago than this. It is also the idempotency
  /// window: a key repeated after its notification is gone starts a new notification.
  std::chrono::milliseconds max_age{std::chrono::hours(24 * 7)};
  /// Then the oldest final notifications go until the database's live pages fit in this.
  std::int64_t max_db_bytes = std::int64_t{2} << 30;
  /// Delivery log segments older than this are deleted (the current segment never is).
  std::chrono::milliseconds log_max_age{std::chrono::hours(24 * 7)};
  /// Then the oldest segments go until the log fits in this.
  std::int64_t log_max_bytes = std::int64_t{1} << 30;
  /// How often the pruner looks. 0 = never on its own (prune on request only).
  std::chrono::milliseconds interval{std::chrono::minutes(1)};
};

/// One delivery log segment as seen on disk.
struct LogSegment {
  std::filesystem::path path;
  std::int64_t bytes = 0;
  std::int64_t modified_ms = 0;  ///< last write, ms since epoch
};

/// Which segments to delete: those last written before `now - log_max_age`, then the oldest until
/// the rest fit in `log_max_bytes`. The newest segment (the one being written) is always kept.
/// `segments` must be in time order (their names sort so).
[[nodiscard]] std::vector<std::filesystem::path> segments_to_prune(const std::vector<LogSegment>& segments,
                                                                   const RetentionOptions& limits, std::int64_t now_ms);

/// The store limits for a pass at `now_ms`.
[[nodiscard]] PruneLimits store_limits(const RetentionOptions& limits, std::int64_t now_ms);

/// What one pass removed.
struct PruneReport {
  PruneResult store;
  std::uint64_t segments = 0;       ///< log segment files deleted
  std::int64_t segment_bytes = 0;   ///< their size
  std::int64_t log_bytes = 0;       ///< what the log holds afterwards
};

/// Lists the segments of a delivery log folder, in time order.
[[nodiscard]] std::vector<LogSegment> list_segments(const std::filesystem::path& log_dir);

/// One pruning pass over a store and its log folder. Throws StoreError while the disk refuses writes.
/// `stop`, when given and set, ends the pass between two chunks.
PruneReport prune_once(Store& store, const std::filesystem::path& log_dir, const RetentionOptions& limits,
                       std::int64_t now_ms, const std::atomic<bool>* stop = nullptr);

/// Runs prune_once every `interval` on the thread "herald-prune" until destroyed.
class Retention {
 public:
  /// `after_pass` (may be empty) runs on the pruner thread after each pass, e.g. to trim caches
  /// of what was pruned.
  Retention(Store& store, std::filesystem::path log_dir, RetentionOptions limits,
            std::function<void(const PruneReport&)> after_pass = {});
  ~Retention();  ///< stops the thread; a pass in progress finishes its current chunk first
  Retention(const Retention&) = delete;
  Retention& operator=(const Retention&) = delete;

  /// Runs a pass now on the caller's thread (serialised with the background passes).
  PruneReport run_now();
  /// Totals since start.
  [[nodiscard]] PruneReport totals() const;

 private:
  void loop();

  Store& store_;
  std::filesystem::path log_dir_;
  RetentionOptions limits_;
  std::function<void(const PruneReport&)> after_pass_;
  mutable std::mutex mutex_;  // guards stopping_, totals_
  std::mutex pass_mutex_;     // one pass at a time
  std::condition_variable wake_;
  bool stopping_ = false;
  std::atomic<bool> stop_flag_{false};  ///< read by a pass between its chunks
  PruneReport totals_;
  std::thread thread_;
};

}  // namespace herald
